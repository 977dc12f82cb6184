"""The evaluation settings (``params:evaluation``) as one validated dataclass, and the
seeds that scoring uses."""

from __future__ import annotations

#: Model selection during training generates its images from seeds ``SELECTION_SEED_OFFSET,
#: SELECTION_SEED_OFFSET + 1, ...``, a range the evaluation's seeds may not enter, so that
#: the generator kept is never chosen on the images its reported scores are computed from.
SELECTION_SEED_OFFSET = 2**31
