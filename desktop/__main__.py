"""`python -m desktop`, and the built app's entry point (build.spec)."""

import sys


def _broken_install(exc: BaseException) -> int:
    """A library missing from this copy (llama.cpp, Qt, ...): one line saying what to do, not a
    traceback. Not engine.errors.reinstall_hint: importing the engine may be what failed."""
    hint = (
        "this copy of Memex is damaged: download it again"
        if getattr(sys, "frozen", False)
        else "reinstall Memex's packages: `make clean` then `make run`"
    )
    print(f"memex: a part of Memex could not be loaded ({exc}); {hint}.", file=sys.stderr)
    return 1


try:
    from desktop.app import main
except (ImportError, OSError, RuntimeError) as exc:  # llama_cpp raises RuntimeError for a lib
    sys.exit(_broken_install(exc))

try:
    sys.exit(main())
except ImportError as exc:  # Qt's widgets are imported only once a window is wanted
    sys.exit(_broken_install(exc))
