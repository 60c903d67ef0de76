"""The Hugging Face Hub as huggingface_hub sees it: its endpoint (HF_ENDPOINT), offline switch (HF_HUB_OFFLINE),
proxies and cache (HF_HOME / HF_HUB_CACHE).

The plan asks huggingface_hub rather than the network so that its answer (reachable or not, which commit) is the
one `from_pretrained` and `datasets.load_dataset` will act on in the trials. A revision is resolved to a commit
once, at plan time, and every trial loads that commit: a repo updated mid-sweep cannot change what trials train.
"""
from __future__ import annotations


class HubError(ValueError):
    """A hub repo or revision that cannot be resolved here; the message is one line."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface_hub can reach its endpoint now: False in its offline mode, else one HEAD request to
    HF_ENDPOINT through its own HTTP session (its proxies), with a short timeout so that a firewalled node
    answers in seconds. Any answer below 500 means the endpoint is there; a 5xx is a proxy or hub outage."""
    from huggingface_hub import constants, get_session
    from huggingface_hub.utils import httpx

    if constants.is_offline_mode():
        return False
    try:
        return get_session().head(constants.ENDPOINT, timeout=timeout).status_code < 500
    except httpx.HTTPError:
        return False


def commit_sha(repo_id: str, repo_type: str = "model", revision: str | None = None,
               online: bool | None = None) -> str:
    """The commit that `revision` (a branch, tag or commit; None: main) of a hub repo points to: the hub's answer
    when it is reachable (`online`; None: find out), else the one the local HF cache recorded when the repo was
    last downloaded (its refs/ folder). Raises HubError when neither knows."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, HFValidationError, RepositoryNotFoundError,
                                        RevisionNotFoundError, RevisionResolutionError)
    from huggingface_hub.utils import httpx

    online = hub_reachable() if online is None else online
    wanted = f"{repo_id} at {revision or 'main'}"
    try:
        return HfApi().resolve_revision(repo_id, repo_type=repo_type, revision=revision,
                                        local_files_only=not online).resolved
    except RevisionResolutionError:
        raise HubError(f"{wanted}: the hub is unreachable and the local Hugging Face cache "
                       f"({constants.HF_HUB_CACHE}) has no record of it") from None
    except GatedRepoError:
        raise HubError(f"{repo_id}: gated on the hub; accept its terms there and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id}: no such {repo_type} repository on the hub (or it is private)") from None
    except RevisionNotFoundError:
        raise HubError(f"{wanted}: the hub has no such revision") from None
    except (HfHubHTTPError, HFValidationError, httpx.HTTPError) as error:
        raise HubError(f"{wanted}: {one_line(error)}") from None


def one_line(error: BaseException) -> str:
    """The first line of an exception's message (library errors often append tracebacks, URLs or hints)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
