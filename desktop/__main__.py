"""`python -m desktop`, and the built app's entry point (build.spec)."""

import sys

try:
    from desktop.app import main
except (ImportError, OSError) as exc:  # a library missing from this copy (llama.cpp, Qt, ...)
    # Not engine.errors.reinstall_hint: importing the engine is what just failed.
    hint = (
        "this copy of Memex is damaged: download it again"
        if getattr(sys, "frozen", False)
        else "reinstall Memex's packages: `make clean` then `make run`"
    )
    print(f"memex: a part of Memex could not be loaded ({exc}); {hint}.", file=sys.stderr)
    sys.exit(1)

sys.exit(main())
