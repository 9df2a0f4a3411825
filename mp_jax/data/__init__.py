"""Course-data loaders, validation and stand-in builders (one per question)."""
from mp_jax.data.course import (
    ACTIVITY_CLASSES,
    COURSE_FILES,
    ActivityData,
    DataError,
    NgramData,
    PatchData,
    find_course_file,
    load_activity,
    load_ngrams,
    load_patches,
)

__all__ = [
    "ACTIVITY_CLASSES", "COURSE_FILES", "ActivityData", "DataError", "NgramData", "PatchData",
    "find_course_file", "load_activity", "load_ngrams", "load_patches",
]
