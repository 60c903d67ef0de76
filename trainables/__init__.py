"""What runs inside one Ray trial: data, trainables, metrics, model sizing."""
import logging
import warnings

# On CPUs with AVX512-BF16, importing bitsandbytes (which transformers does) logs a warning that the optional
# `kernels` package, which fetches a faster 4-bit kernel from the model hub, is missing. Its built-in fallback
# works, and the hub is often unreachable anyway: the warning would only be a second line on every one-line error.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# Tune logs "Checkpoint successfully created at ..." at INFO for every epoch of every trial; the trial table and
# the experiment dir already say so.
logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)

# peft 0.21 calls transformers 5's deprecated gradient-checkpointing names inside prepare_model_for_kbit_training
# and get_peft_model: a FutureWarning per trial about code that is not ours and that we cannot change.
warnings.filterwarnings("ignore", message=r"`(is_gradient_checkpointing|gradient_checkpointing_enable)` is deprecated",
                        category=FutureWarning)
