"""A small file in the WISDM v1.1 raw format, shared by the builder's and Q3's tests."""
from pathlib import Path

from mp_jax.data.course import ACTIVITY_CLASSES

WISDM_NAMES = {"downstairs": "Downstairs", "jogging": "Jogging", "sitting": "Sitting",
               "standing": "Standing", "upstairs": "Upstairs", "walking": "Walking"}
USERS = (1, 2, 3, 4, 5, 6)
RUN = 400  # samples per (user, activity) run → 6 windows of 150 at stride 50


def write_wisdm(path: Path) -> dict:
    """A small file in the exact WISDM v1.1 raw format, with malformed records.

    x = the running record index (so a window spanning a skipped record shows a jump),
    y = the user, z = the activity's index. Returns the expected facts.
    """
    lines, idx, bad = [], 0, 0
    ts = 49105962326000

    def rec(user, act, x, y, z):
        nonlocal ts
        ts += 50_000_000
        return f"{user},{act},{ts},{x},{y},{z};"

    for user in USERS:
        for k, name in enumerate(ACTIVITY_CLASSES):
            act = WISDM_NAMES[name]
            for i in range(RUN):
                if user == 2 and name == "walking" and i == 200:
                    lines.append(f"{user},{act},{ts},{idx},{user},;")  # empty z: malformed, ends the run
                    idx += 1
                    bad += 1
                lines.append(rec(user, act, float(idx), float(user), float(k)))
                idx += 1
            # malformed records between runs, in the kinds the real file has
            lines.append(f"{user},Jumping,{ts},1.0,2.0,3.0;")  # unknown activity
            lines.append(f"{user},{act},{ts},abc,2.0,3.0;")  # non-numeric
            lines.append(f"{user},{act},{ts},1.0,2.0;")  # too few fields
            idx += 3
            bad += 3
    # two records on one line (valid), as in the real file, plus a NaN record
    lines[10] = lines[10] + lines[11]
    del lines[11]
    lines.append("7,Walking,0,nan,1.0,2.0;")
    bad += 1
    path.write_text("\n".join(lines) + "\n")
    # windows per class: 6 users × 6 windows, except walking for user 2 (two runs of 200: 2 + 2)
    available = {name: 36 for name in ACTIVITY_CLASSES}
    available["walking"] = 34
    return {"malformed": bad, "available": available}
