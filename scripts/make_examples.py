"""Write the app's ready examples, assets/examples/*.json: DragBench-Shapes tasks as dragdiff sessions."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dragdiff.config import resolve_config  # noqa: E402
from dragdiff.drag import DragConfig  # noqa: E402
from dragdiff.eval.shapes_bench import make_tasks  # noqa: E402
from dragdiff.point_session import Session  # noqa: E402
from dragdiff.session_io import save_session  # noqa: E402

OUT = ROOT / "assets" / "examples"
NAMES = {"move": "move-a-shape", "move2": "move-two-shapes", "stretch": "stretch-a-shape"}

if __name__ == "__main__":
    for task in make_tasks(3, seed=11):
        session = Session(
            task.input_image(), task.handles, task.targets, task.mask, task.prompt, "demo", resolve_config(DragConfig)
        )
        save_session(session, OUT / f"{NAMES[task.kind]}.json")
        print(OUT / f"{NAMES[task.kind]}.json", task.prompt)
