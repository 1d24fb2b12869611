"""Hydra glue: hand the whole command line to Hydra, with plugins' configs on the path.

``hairlab run ARGS...`` must behave exactly like ``python app.py ARGS...`` for a Hydra
app (overrides, ``-m``, ``--cfg``, ``--info``, launchers, ``hydra.mode: MULTIRUN`` in an
experiment). We therefore call Hydra's own entry routine with a parsed argv rather than the
Compose API (which has no multirun, hydra#1889). Plugins' YAML trees join the search path
through a ``hydra.searchpath`` override (works for editable and wheel installs alike, unlike
``hydra_plugins`` namespace discovery, hydra#3252); their structured configs go through the
ConfigStore. Errors come back as :class:`~hairlab.errors.HairlabError` one-liners.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from hairlab.errors import HairlabError

#: The packaged config tree (``conf/`` in the source tree, ``hairlab_conf`` when installed).
CONFIG_MODULE = "hairlab_conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
CONFIG_NAME = "config"
#: Set to 1 to see full tracebacks instead of one-line errors.
ENV_DEBUG = "HAIRLAB_DEBUG"
#: Hydra plugins that hairlab's extras install: group -> option -> extra (``pip install 'hairlab[EXTRA]'``).
EXTRAS = {
    "hydra/launcher": {"joblib": "joblib", "submitit_local": "slurm", "submitit_slurm": "slurm"},
    "hydra/sweeper": {"optuna": "search"},
}
#: The command line being composed (for hints that quote the user's own override back).
_ARGS: list[str] = []


def debug_enabled() -> bool:
    return os.environ.get(ENV_DEBUG, "") not in ("", "0") or os.environ.get("HYDRA_FULL_ERROR") == "1"


#: Config groups applied after everything else in the defaults list, whatever the order given:
#: ``debug=fast`` makes an ``+experiment=`` debug-sized (LHT puts ``debug`` last in its defaults).
LAST_GROUPS = ("debug",)


def _groups_last(args: list[str]) -> list[str]:
    """``debug=fast`` -> ``+debug=fast`` at the end of the overrides (appended after ``+experiment=``)."""
    head, tail = [], []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in LAST_GROUPS:
            tail.append(f"+{key.lstrip('+')}={value}")
        else:
            head.append(arg)
    return head + tail


def _prepare_overrides(args: list[str]) -> list[str]:
    """Register plugin configs and add their search-path entries to the overrides."""
    from hydra.core.config_store import ConfigStore

    from hairlab.contract.store import register_schemas
    from hairlab.plugin_manager import get_host

    host = get_host()
    store = ConfigStore.instance()
    users = [item for arg in args for item in _user_searchpath(arg)]
    register_schemas(host, store, users)  # every entry's schema is its group's option: no YAML needed
    host.configure_store(store)
    extra = host.searchpath()
    args = _groups_last(list(args))
    if not extra:
        return args
    out, merged = [], False
    for arg in args:
        items = _user_searchpath(arg)
        if arg.split("=", 1)[0].lstrip("+~") == "hydra.searchpath" and "=" in arg:
            out.append(f"hydra.searchpath=[{','.join(items + extra)}]")
            merged = True
        else:
            out.append(arg)
    if not merged:
        out.append(f"hydra.searchpath=[{','.join(extra)}]")
    return out


def _user_searchpath(arg: str) -> list[str]:
    """The entries of a ``hydra.searchpath=[...]`` override (none for any other argument)."""
    key, sep, value = arg.partition("=")
    if key.lstrip("+~") != "hydra.searchpath" or not sep:
        return []
    return [s.strip() for s in value.strip().strip("[]").split(",") if s.strip()]


def _split_hydra_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate flags from overrides so injected overrides go after the user's."""
    flags, overrides = [], []
    takes_value = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-path", "-cp",
                   "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
    it = iter(argv)
    for arg in it:
        if arg.startswith("-"):
            flags.append(arg)
            if arg in takes_value:
                nxt = next(it, None)
                if nxt is not None:
                    flags.append(nxt)
        else:
            overrides.append(arg)
    return flags, overrides


def run(argv: list[str], task_function: Callable[[Any], Any]) -> None:
    """Run ``task_function`` as a Hydra app over ``argv`` (everything after ``hairlab run``)."""
    from hydra._internal.utils import _run_hydra, get_args_parser

    flags, overrides = _split_hydra_args(list(argv))
    _ARGS[:] = overrides
    if _shell_completion(flags, overrides):
        return
    # --info takes an optional value; keep Hydra's own parser in charge of the meaning.
    parser = get_args_parser()
    with _errors_as_hairlab(), _quiet_job_error_line(), _hydra_full_error():
        args = parser.parse_args(flags + _prepare_overrides(overrides))
        _run_hydra(
            args=args,
            args_parser=parser,
            task_function=task_function,
            config_path=CONFIG_PATH,
            config_name=CONFIG_NAME,
        )


#: ``eval "$(hairlab run -sc install=bash)"``: Hydra's completion of config groups and keys after
#: ``hairlab run``, typer's (``hairlab --install-completion``) for everything else. Hydra's own
#: script would call ``hairlab -sc query=bash`` (no ``run``) and claim the whole command.
BASH_COMPLETION = r"""_hairlab_hydra_completion()
{
    local words=($COMP_LINE)
    if [ "${words[1]}" == "run" ] && (( COMP_CWORD >= 2 )); then
        local choices=$(COMP_POINT=$COMP_POINT COMP_LINE=$COMP_LINE hairlab run -sc query=bash 2>/dev/null)
        local word=${words[$COMP_CWORD]}
        COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$word"))
    elif declare -F _hairlab_completion > /dev/null; then
        _hairlab_completion  # typer's, from `hairlab --install-completion`
    else
        COMPREPLY=($(compgen -W "run compare ui hw-report plugins list --help --version" -- "${COMP_WORDS[COMP_CWORD]}"))
    fi
}
COMP_WORDBREAKS=${COMP_WORDBREAKS//=}
complete -o nospace -o default -F _hairlab_hydra_completion hairlab
"""
BASH_UNINSTALL = "complete -r hairlab 2> /dev/null; unset -f _hairlab_hydra_completion\n"


def _shell_completion(flags: list[str], overrides: list[str]) -> bool:
    """``-sc install=bash`` / ``uninstall=bash``: print hairlab's script (True: done). ``-sc query=SHELL``:
    drop the ``run`` word from ``$COMP_LINE`` so Hydra completes the words after it (False: Hydra runs)."""
    if not {"-sc", "--shell-completion"} & set(flags):
        return False
    if "install=bash" in overrides or "uninstall=bash" in overrides:
        print(BASH_COMPLETION if "install=bash" in overrides else BASH_UNINSTALL, end="")
        return True
    line = os.environ.get("COMP_LINE")
    if line is not None:
        os.environ["COMP_LINE"] = re.sub(r"^(\s*\S+)\s+run(?=\s|$)", r"\1", line, count=1)
    return False


def compose(overrides: list[str], config_name: str = CONFIG_NAME) -> Any:
    """Compose the config once (no job, no output dir), for commands such as ``hw-report``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from hairlab.contract.preflight import check_chosen
    from hairlab.plugin_manager import get_host

    _ARGS[:] = overrides
    with _errors_as_hairlab():
        final = _prepare_overrides(list(overrides))
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=final, return_hydra_config=True)
        check_chosen(cfg, get_host(), list(overrides))
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg


@contextlib.contextmanager
def _hydra_full_error() -> Iterator[None]:
    """Make Hydra re-raise instead of printing, so we can print one clean line."""
    old = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = old


class _DropJobErrorLine:
    """A stderr proxy that drops Hydra's "Error executing job with overrides: [...]" line.

    Hydra writes it just before re-raising a job's exception; hairlab prints its own one-line
    error (and, for sweeps, a summary of every failed job), so the extra line is noise.
    """

    _PREFIX = "Error executing job with overrides:"

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text.startswith(self._PREFIX):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _quiet_job_error_line() -> Iterator[None]:
    import sys

    if debug_enabled():
        yield
        return
    original = sys.stderr
    sys.stderr = _DropJobErrorLine(original)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stderr = original


@contextlib.contextmanager
def _errors_as_hairlab() -> Iterator[None]:
    try:
        yield
    except (HairlabError, SystemExit, KeyboardInterrupt, BrokenPipeError):  # a closed pipe ends quietly (cli)
        raise
    except Exception as exc:
        if debug_enabled():
            raise
        raise HairlabError(describe_config_error(exc)) from exc


def describe_config_error(exc: BaseException) -> str:
    """One line for a Hydra/OmegaConf composition error: what is wrong and what to do."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    # Unwrap to the most specific cause we know how to word.
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for err in chain:
        if isinstance(err, HairlabError):
            return str(err)
    for err in chain:
        if isinstance(err, OSError):
            from hairlab.tracking.store import read_only_message

            text = read_only_message(err)
            if text:
                return text
    for err in chain:
        if isinstance(err, MissingConfigException):
            return _describe_missing(err)
    for err in chain:
        if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
            return describe_omegaconf_error(err)
    for err in chain:
        m = re.search(r"Could not override '([^']+)'\. No match in the defaults list", str(err))
        if m:
            value = _user_value(m.group(1)) or "NAME"
            return (f"{m.group(1)} is not in the defaults list, so it cannot be overridden; add it with "
                    f"+{m.group(1)}={value}")
    first = str(exc).strip().splitlines()
    text = first[0] if first else type(exc).__name__
    return f"{text} (set {ENV_DEBUG}=1 for details)"


def _describe_missing(err: Any) -> str:
    missing = err.missing_cfg_file or ""
    options = list(err.options or [])
    msg = str(err)
    m = re.search(r"Could not find '([^']+)'", msg)
    if m:
        missing = m.group(1)
    group, _, option = missing.rpartition("/")
    if not options:
        m = re.search(r"Available options in '[^']*':\n((?:\t.*\n?)+)", msg)
        if m:
            options = [o.strip() for o in m.group(1).splitlines() if o.strip()]
    if group:
        listed = ", ".join(o for o in options if "/" not in o) if options else "none"
        extra = EXTRAS.get(group, {}).get(option)
        if extra:
            return (f"unknown {group} option '{option}'; available: {listed or 'none'}; {option} needs an extra: "
                    f"pip install 'hairlab[{extra}]'")
        prefix = _user_prefix(group)
        return (
            f"unknown {group} option '{option}'; available: {listed or 'none'} "
            f"(choose one with {prefix}{group}=NAME, or install a plugin that provides it){_failure_note(group)}"
        )
    return f"config '{missing}' not found (check the name, or `hairlab run --info searchpath`)"


def _user_prefix(key: str) -> str:
    """The ``+``/``++`` the user wrote before ``key=`` (``+experiment=x`` -> ``+``), so a hint can repeat it."""
    for arg in _ARGS:
        name = arg.split("=", 1)[0]
        if name.lstrip("+") == key:
            return name[: len(name) - len(key)]
    return ""


def _user_value(key: str) -> str:
    """The value the user gave ``key`` on the command line, else ''."""
    for arg in _ARGS:
        name, sep, value = arg.partition("=")
        if sep and name.lstrip("+~") == key:
            return value
    return ""


def _failure_note(group: str) -> str:
    """``; note: plugin 'x' failed to load (hairlab plugins)`` when one did: it may own the option."""
    try:
        from hairlab.contract.entries import GROUPS
        from hairlab.plugin_manager import get_host

        kind = next((k for k, g in GROUPS.items() if g == group), None)
        return str(get_host().failure_note(kind))
    except Exception:  # noqa: BLE001 - a note must never hide the error it annotates
        return ""


def describe_omegaconf_error(err: Any) -> str:
    """One line for a type or key error on a config value, naming the entry and plugin that own it.

    The nodes hairlab stores from entries' schemas carry their owner
    (:func:`hairlab.contract.store.owner_label`), so ``optimizer.lr=abc`` reads
    ``optimizer.lr='abc': expected float (optimizer 'adam' (plugin optim, hairlab 0.1.0))``.
    """
    from hairlab.contract.store import owner_label

    key = getattr(err, "full_key", "") or "?"
    text = str(err).strip().splitlines()[0]
    label = owner_label(getattr(err, "object_type", None))
    owner = f" ({label})" if label else ""
    m = re.search(r"Value '(.*?)' (?:of type '\w+' )?could not be converted to (\w+)", text)
    if m:
        return f"{key}='{m.group(1)}': expected {m.group(2).lower()}{owner} (fix the override {key}=...)"
    m = re.search(r"Value '(.*)' is not a valid (\w+)", text)
    if m:
        return f"{key}='{m.group(1)}': expected {m.group(2).lower()}{owner} (fix the override {key}=...)"
    if "not in struct" in text or ("Key '" in text and "not" in text):
        parent = key.rpartition(".")[0]
        valid = _valid_keys(getattr(err, "object_type", None))
        if valid:
            hint = f"valid options: {valid}"
        else:  # a node without a schema (a YAML list item): the key can be added, then checked
            dotted = re.sub(r"\[(\d+)\]", r".\1", key)
            hint = (f"+{dotted}={_user_value(dotted) or 'VALUE'} adds it (then checked against its entry's "
                    "options); `hairlab run --cfg job` shows the keys there are")
        where = f"an option of {label}" if label else f"a key of {parent or 'the config'}"
        return f"{key} is not {where}; {hint}"
    return f"{key}: {text}{owner}"


def _valid_keys(object_type: Any) -> str:
    import dataclasses

    if object_type is None or not dataclasses.is_dataclass(object_type):
        return ""
    return ", ".join(sorted(f.name for f in dataclasses.fields(object_type) if f.name != "name"))
