"""Every entry's schema as a node in Hydra's ConfigStore: the schema is the option's only source.

``optimizer/adam`` is the ``adam`` entry's schema plus ``name: adam``, stored with the plugin
as provider (as Hydra's own core plugins store their configs). A YAML option file is then
needed only where it adds something (a preset model, an experiment): ``optimizer=lion`` works
with no YAML, and Hydra itself refuses ``optimizer.lr=abc`` or ``optimizer.typo=1`` while
composing, before any job starts.

Every schema is also stored as ``<group>/schema/<name>``, which a YAML preset extends instead of
repeating the defaults::

    # optimizer/fast_adam.yaml
    defaults:
      - schema/adam@_here_
      - _self_
    lr: 0.01

A YAML file with the very name of an entry (``optimizer/adam.yaml``) shadows the schema node of
that name (Hydra would otherwise "automatically match" the two, deprecated since 1.1); it
should extend ``schema/<name>`` as above.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

from hairlab.contract import nodes
from hairlab.contract.entries import GROUPS, owner, schema_of
from hairlab.contract.schema import _copier, hints

if TYPE_CHECKING:
    from hairlab.plugin_manager import PluginHost

#: The attribute a stored node class carries so a Hydra error can name the entry and plugin.
OWNER_ATTR = "__hairlab_owner__"
#: Provider of the core's own nodes (trainer, tracking).
CORE = "hairlab"


_NODES: dict[tuple[Any, ...], type] = {}


def node_class(schema: type, *, name: str | None, label: str, defaults: dict[str, Any] | None = None,
               home: str | None = None) -> type:
    """A Hydra-friendly copy of ``schema``: ``name`` first (when given), OmegaConf-typed fields.

    Types OmegaConf cannot hold (``Literal``, nested dataclasses it rejects) become ``Any`` here;
    hairlab's own check still applies the real type before the job runs. Made once per schema
    and process (``hairlab run`` and every compose register the schemas).
    """
    key = (schema, name, label, tuple(sorted((defaults or {}).items())))
    if key not in _NODES:
        cls = _node_class(schema, name=name, label=label, defaults=defaults)
        if home is not None:  # e.g. optimizer/sgd -> hairlab.contract.nodes.optimizer__sgd
            cls.__name__ = re.sub(r"\W", "_", home.replace("/", "__"))
            nodes.add(cls)
        _NODES[key] = cls
    return _NODES[key]


def _node_class(schema: type, *, name: str | None, label: str, defaults: dict[str, Any] | None) -> type:
    tps = hints(schema)
    fields: list[tuple[str, Any, Any]] = []
    if name is not None and "name" not in {f.name for f in dataclasses.fields(schema)}:
        fields.append(("name", str, dataclasses.field(default=name)))
    for f in dataclasses.fields(schema):
        if not f.init:
            continue
        if defaults and f.name in defaults:
            spec = _spec(defaults[f.name])
        elif f.default_factory is not dataclasses.MISSING:
            spec = dataclasses.field(default_factory=f.default_factory)
        elif f.default is not dataclasses.MISSING:
            spec = _spec(f.default)
        else:
            spec = dataclasses.field(default="???")  # OmegaConf's MISSING: must be set
        fields.append((f.name, _simplify(tps.get(f.name, Any)), spec))
    cls = dataclasses.make_dataclass(f"{schema.__name__}Node", fields)
    if not _accepted(cls):  # some type OmegaConf cannot hold: find it, field by field
        fields = [(n, _omega_type(n, tp, spec), spec) for n, tp, spec in fields]
        cls = dataclasses.make_dataclass(f"{schema.__name__}Node", fields)
    setattr(cls, OWNER_ATTR, label)
    cls.__doc__ = schema.__doc__
    return cls


def _spec(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return dataclasses.field(default_factory=_copier(value))
    return dataclasses.field(default=value)


def _simplify(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType) and any(dataclasses.is_dataclass(a) for a in typing.get_args(tp)):
        # an optional group of options (trainer.early_stop): OmegaConf's Optional[dataclass] = None
        # node refuses every override of its keys, so Hydra holds it as Any and hairlab's check types it
        return Any
    if origin is Literal:
        args = typing.get_args(tp)
        return type(args[0]) if args else Any
    if origin in (Union, types.UnionType):
        args = tuple(_simplify(a) for a in typing.get_args(tp))
        return Union[args]  # type: ignore[return-value]
    return tp


def _accepted(cls: type) -> bool:
    from omegaconf import OmegaConf

    try:
        OmegaConf.structured(cls)
    except Exception:  # noqa: BLE001 - any rejection
        return False
    return True


def _omega_type(name: str, tp: Any, spec: Any) -> Any:
    """``tp`` if OmegaConf accepts it for this default, else ``Any`` (hairlab's check keeps the real type)."""
    return tp if _accepted(dataclasses.make_dataclass("Probe", [(name, tp, spec)])) else Any


def search_dirs(host: PluginHost, extra: Sequence[str] = ()) -> list[Path]:
    """The directories of the config search path (hairlab's tree, plugins', the user's)."""
    from importlib import resources

    from hairlab.hydra_app import CONFIG_MODULE

    out = []
    for entry in [f"pkg://{CONFIG_MODULE}", *host.searchpath(), *extra]:
        try:
            if entry.startswith("pkg://"):
                out.append(Path(str(resources.files(entry[len("pkg://"):].replace("/", ".")))))
            elif entry.startswith("file://"):
                out.append(Path(entry[len("file://"):]))
        except (ModuleNotFoundError, TypeError, ValueError):
            continue
    return out


def register_schemas(host: PluginHost, store: Any, searchpath: list[str] | None = None) -> None:
    """Store every entry's schema node, and the core's model, trainer and tracking nodes.

    ``model/schema/convnet`` is the builder's :class:`~hairlab.models.config.ModelConfig`: a model
    preset extends it (``defaults: [schema/convnet@_here_, _self_]``) to get typed keys such as
    ``model.batch_norm`` without writing them out.
    """
    from hairlab.tracking.settings import TrackingConfig
    from hairlab.training.config import EngineConfig

    dirs = search_dirs(host, list(searchpath or []))

    def shadowed(group: str, name: str) -> bool:
        return any((d / group / f"{name}.yaml").is_file() for d in dirs)

    for kind, group in GROUPS.items():
        for entry in host.registry(kind):
            schema = schema_of(entry, kind)
            provider = entry.plugin or CORE
            if schema is None:  # a factory of **options only: selectable, options unchecked (+KEY=VALUE)
                if not shadowed(group, entry.name):
                    store.store(group=group, name=entry.name, node={"name": entry.name}, provider=provider)
                continue
            node = node_class(schema, name=entry.name, label=owner(entry, kind, host), home=f"{group}/{entry.name}")
            store.store(group=f"{group}/schema", name=entry.name, node=node, provider=provider)
            if not shadowed(group, entry.name):
                store.store(group=group, name=entry.name, node=node, provider=provider)
            else:  # a YAML of that name is the option now (it should extend schema/<name>)
                _forget(store, group, entry.name)
    from hairlab.models.config import ModelConfig

    store.store(group="model/schema", name="convnet",
                node=node_class(ModelConfig, name=None, label="the model config", home="model/convnet"),
                provider=CORE)
    store.store(group="trainer", name="default",
                node=node_class(EngineConfig, name=None, label="trainer settings of hairlab", home="trainer/default"),
                provider=CORE)
    for backend in ("mlflow", "local"):
        node = node_class(TrackingConfig, name=None, label="tracking settings of hairlab",
                          defaults={"backend": backend}, home=f"tracking/{backend}")
        store.store(group="tracking", name=backend, node=node, provider=CORE)


def _forget(store: Any, group: str, name: str) -> None:
    """Drop a node stored by an earlier registration (another search path, same process)."""
    repo = getattr(store, "repo", None)
    node = repo
    for part in group.split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(f"{name}.yaml", None)


def owner_label(object_type: Any) -> str | None:
    """The entry and plugin of a stored node class (for Hydra's own type errors)."""
    return getattr(object_type, OWNER_ATTR, None)
