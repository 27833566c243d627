"""gd-torch's command line in a new process, and what it imported."""

import subprocess
import sys


def imported_by_main(arguments: list[str], module: str) -> tuple[bool, str]:
    """Whether ``gd_torch.cli.main(arguments)``, run in a new Python, imported ``module``, and
    what it printed."""
    code = (
        f"import sys; from gd_torch.cli import main; main({arguments!r}); "
        f"print({module!r} in sys.modules)"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *printed, answer = ran.stdout.strip().splitlines()
    return answer == "True", "\n".join(printed)
