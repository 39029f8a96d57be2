"""llama-cpp-python's OpenAI-compatible server with the engine's AMX guard:

    python -m engine.llm.server --model FILE.gguf [llama_cpp.server's options]

The same server as `python -m llama_cpp.server`, for a model that outgrows the app's process
(engine.llm.remote talks to it). On a CPU with AMX, llama.cpp's AMX kernels crash the first
decode of a Q4_K_M model (engine.llm.llama, amx_safe_load); this loads the model without them.
The tests and benches of the remote backend start their server so.
"""

from __future__ import annotations

import runpy

from engine.llm.llama import amx_safe_load


def main() -> None:
    # the server loads its model at start-up, inside its main: the guard is held for the run
    with amx_safe_load():
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
