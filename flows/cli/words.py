"""Usage lines that read as words, the way forge, cast and terraform print them: ``PLAYBOOK``, ``FILE``,
``NAME``, never typer's ``{playbook}``, ``<path>`` or ``<list[str]>``. Applied once when the CLI loads."""

from __future__ import annotations

from typing import Any

try:
    from typer import core
except ImportError:  # pragma: no cover
    core = None  # type: ignore[assignment]  # typer without its core module: the patches are skipped

WORDS = {"int": "N", "float": "NUMBER", "str": "TEXT", "bool": "BOOL"}


def _word(param: Any) -> str:
    if param.metavar is not None:
        return str(param.metavar)
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and getattr(desc, "is_path", False):
        info = getattr(desc, "parameter_info", None)
        word = "DIR" if getattr(info, "file_okay", True) is False else "FILE"
    elif desc is not None and getattr(desc, "is_choice", False):
        word = "|".join(str(c) for c in (desc.choices or ()))
    else:
        annotation: Any = getattr(desc, "annotation", None)
        while getattr(annotation, "__args__", None) and getattr(annotation, "__origin__", None) is list:
            annotation = annotation.__args__[0]
        word = WORDS.get(getattr(annotation, "__name__", ""), "VALUE")
    return word


def _argument_usage(self: Any) -> str:
    name = str(self.metavar or (self.name or "").upper())
    name = name if self.required else f"[{name}]"
    return name + ("..." if self.nargs != 1 else "")


def _argument_name(self: Any) -> str:
    return str(self.metavar or (self.name or "").upper()) + ("..." if self.nargs != 1 else "")


def apply() -> None:
    if core is None or not hasattr(core, "TyperArgument"):
        return
    # Patching typer's classes: Any, because mypy refuses assignments to methods.
    argument: Any = core.TyperArgument
    option: Any = core.TyperOption
    if hasattr(argument, "_usage_display_name"):
        argument._usage_display_name = _argument_usage
    if hasattr(argument, "_rich_display_name"):
        argument._rich_display_name = _argument_name
    argument.display_type_rich = lambda self, ctx: None
    option.display_type_rich = _option_word


def _option_word(self: Any, ctx: Any) -> str:
    try:
        word = _word(self)
    except Exception:  # noqa: BLE001 - help text never crashes the CLI
        word = "VALUE"
    return word + ("..." if self.nargs != 1 else "")
