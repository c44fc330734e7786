"""Creating task specs: validated splits and the identity hash that makes episodes comparable."""

from __future__ import annotations

import hashlib
import json
import math
import random

from django.db import transaction

from learning.errors import InvalidInput
from learning.events import catalog_changed_on_commit
from learning.models import MAX_POSITIVE_INT, SourceDomain, TaskSpec, Visibility

SPLIT_PARTS = ("meta_train", "meta_val", "meta_test")


def default_split(*, domain: SourceDomain, seed: int = 0) -> dict:
    """A split of the domain's groups (or, without groups, of its classes), shuffled by ``seed``.

    With 20 or more units it is 60/20/20 (meta-train, meta-validation, meta-test); with
    fewer, half and half with no validation part, so that small domains (10 digits) still
    leave enough meta-test classes for 5-way episodes. Function domains get
    ``{"by": "seed"}``: train and test tasks come from disjoint seed streams.
    """
    if not domain.is_classification:
        return {"by": "seed"}
    by = "group" if domain.class_groups else "class"
    names = [g["name"] for g in domain.class_groups] if by == "group" else [c["name"] for c in domain.classes]
    names = sorted(names)
    random.Random(seed).shuffle(names)
    if len(names) >= 20:
        n_train, n_val = round(len(names) * 0.6), round(len(names) * 0.2)
    else:
        n_train, n_val = math.ceil(len(names) / 2), 0
    return {
        "by": by,
        "meta_train": sorted(names[:n_train]),
        "meta_val": sorted(names[n_train : n_train + n_val]),
        "meta_test": sorted(names[n_train + n_val :]),
    }


def split_classes(*, domain: SourceDomain, split: dict, part: str) -> list[int]:
    """The class indices (label order) that ``split[part]`` selects."""
    wanted = set(split.get(part, []))
    key = "group" if split.get("by") == "group" else "name"
    return [i for i, c in enumerate(domain.classes) if c[key] in wanted]


def split_summary(*, domain: SourceDomain, split: dict) -> str:
    """The split in words: "meta-train 3 groups (70 classes) · meta-val … · meta-test …"."""
    if not domain.is_classification:
        return "train and test tasks drawn from disjoint seed streams"
    unit = "groups" if split.get("by") == "group" else "classes"
    parts = []
    for part in SPLIT_PARTS:
        units = len(split.get(part, []))
        if not units:
            continue
        classes = len(split_classes(domain=domain, split=split, part=part))
        detail = f" ({classes} classes)" if unit == "groups" else ""
        parts.append(f"{part.replace('_', '-')} {units} {unit}{detail}")
    return " · ".join(parts)


def _check_split(*, domain: SourceDomain, split: dict) -> None:
    if not domain.is_classification:
        if split.get("by") != "seed":
            raise InvalidInput('function domains split tasks by seed: use {"by": "seed"}', field="split")
        return
    by = split.get("by")
    if by not in ("group", "class"):
        raise InvalidInput(f'split "by" must be "group" or "class", got {by!r}', field="split")
    if by == "group" and not domain.class_groups:
        raise InvalidInput(f"domain {domain.name!r} has no class groups; split by class", field="split")
    known = {g["name"] for g in domain.class_groups} if by == "group" else {c["name"] for c in domain.classes}
    seen: dict[str, str] = {}
    for part in SPLIT_PARTS:
        names = split.get(part, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidInput(f"split.{part} must be a list of {by} names", field="split")
        for name in names:
            if name not in known:
                raise InvalidInput(f"split.{part}: {domain.name!r} has no {by} {name!r}", field="split")
            if name in seen:
                raise InvalidInput(f"split: {by} {name!r} is in both {seen[name]} and {part}", field="split")
            seen[name] = part
    for part in ("meta_train", "meta_test"):
        if not split.get(part):
            raise InvalidInput(f"split.{part} is empty", field="split")


def _check_shape(
    *, domain: SourceDomain, split: dict, n_way: int, k_shot: int, query_size: int, within_group: bool
) -> None:
    if k_shot < 1:
        raise InvalidInput(f"k_shot must be at least 1, got {k_shot}", field="k_shot")
    if query_size < 1:
        raise InvalidInput(f"query_size must be at least 1, got {query_size}", field="query_size")
    for field, value in (("n_way", n_way), ("k_shot", k_shot), ("query_size", query_size)):
        if value > MAX_POSITIVE_INT:
            raise InvalidInput(f"{field} must be at most {MAX_POSITIVE_INT}, got {value}", field=field)
    if not domain.is_classification:
        return
    if n_way < 2:
        raise InvalidInput(f"n_way must be at least 2, got {n_way}", field="n_way")
    for part in ("meta_train", "meta_test"):
        indices = split_classes(domain=domain, split=split, part=part)
        if within_group:
            sizes: dict[str, int] = {}
            for i in indices:
                sizes[domain.classes[i]["group"]] = sizes.get(domain.classes[i]["group"], 0) + 1
            largest = max(sizes.values(), default=0)
            if largest < n_way:
                raise InvalidInput(
                    f"{n_way}-way within-group episodes need a group with {n_way} classes in {part}; "
                    f"the largest has {largest}",
                    field="n_way",
                )
        elif len(indices) < n_way:
            raise InvalidInput(f"n_way is {n_way} but {part} has only {len(indices)} classes", field="n_way")
        smallest = min(domain.classes[i]["count"] for i in indices)
        if k_shot + query_size > smallest:
            raise InvalidInput(
                f"k_shot + query_size = {k_shot + query_size} exceeds the {smallest} examples "
                f"of the smallest class in {part}",
                field="k_shot",
            )


def task_spec_identity(
    *,
    domain: SourceDomain,
    split: dict,
    n_way: int,
    k_shot: int,
    query_size: int,
    within_group: bool,
    seed: int,
) -> str:
    """sha256 over everything that decides the episodes (the domain by its content hash)."""
    identity = {
        "domain": domain.content_sha256 or domain.slug,
        "split": {k: split[k] for k in sorted(split)},
        "n_way": n_way,
        "k_shot": k_shot,
        "query_size": query_size,
        "within_group": within_group,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _task_spec_fields(
    *,
    domain: SourceDomain,
    name: str = "",
    split: dict | None = None,
    n_way: int = 5,
    k_shot: int = 1,
    query_size: int = 15,
    within_group: bool = False,
    seed: int = 0,
) -> dict:
    """The validated fields of a task spec, its identity hash included; raises :class:`InvalidInput`."""
    if not 0 <= seed <= MAX_POSITIVE_INT:
        raise InvalidInput(f"seed must be from 0 to {MAX_POSITIVE_INT}, got {seed}", field="seed")
    split = split if split is not None else default_split(domain=domain, seed=seed)
    _check_split(domain=domain, split=split)
    _check_shape(
        domain=domain,
        split=split,
        n_way=n_way,
        k_shot=k_shot,
        query_size=query_size,
        within_group=within_group,
    )
    if not domain.is_classification:
        n_way = 1
    shape = {
        "split": split,
        "n_way": n_way,
        "k_shot": k_shot,
        "query_size": query_size,
        "within_group": within_group,
        "seed": seed,
    }
    default_name = f"{domain.name} {n_way}-way {k_shot}-shot" + (" within-group" if within_group else "")
    return {
        "domain": domain,
        "name": name or default_name,
        "identity_hash": task_spec_identity(domain=domain, **shape),
        **shape,
    }


@transaction.atomic
def task_spec_create(
    *, domain: SourceDomain, owner=None, visibility: str = Visibility.PUBLIC, **task
) -> TaskSpec:
    """Validate and create a task spec. ``task`` holds its shape: ``name``, ``split`` (default:
    :func:`default_split`), ``n_way``, ``k_shot``, ``query_size``, ``within_group`` and ``seed``,
    with the defaults of :func:`_task_spec_fields`."""
    return _create(_task_spec_fields(domain=domain, **task), owner=owner, visibility=visibility)


def _create(fields: dict, *, owner, visibility: str) -> TaskSpec:
    spec = TaskSpec.objects.create(owner=owner, visibility=visibility, **fields)
    catalog_changed_on_commit()
    return spec


@transaction.atomic
def task_spec_get_or_create(
    *, domain: SourceDomain, owner=None, visibility: str = Visibility.PUBLIC, **task
) -> TaskSpec:
    """The task spec ``owner`` can see with the same episodes (identity hash), name and
    visibility, else a new one: launching the same task twice names one task family.
    ``task`` takes the other keywords of :func:`task_spec_create`."""
    fields = _task_spec_fields(domain=domain, **task)
    same = (
        TaskSpec.objects.visible_to(owner)
        .filter(domain=domain, identity_hash=fields["identity_hash"], name=fields["name"])
        .filter(visibility=visibility)
        .order_by("pk")
        .first()
    )
    return same or _create(fields, owner=owner, visibility=visibility)
