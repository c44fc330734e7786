"""The built-in domains: sinusoid, gp-1d and digits, registered offline and only once."""

from __future__ import annotations

import hashlib
import io
import json
import math

import numpy as np
import pytest
from django.core.management import call_command

from learning import builtin_domains
from learning.artifacts import artifact_read
from learning.engine.data import load_image_arrays
from learning.engine.functions import FunctionFamily
from learning.errors import InvalidInput
from learning.models import SourceDomain
from learning.services.domains import builtin_domains_register
from tests.learning.factories import function_domain

pytestmark = pytest.mark.django_db


def test_builtins_are_registered_once(artifacts_in_tmp):
    # given an empty catalog

    # when the built-ins are registered twice
    first = builtin_domains_register()
    files = sorted(p for p in artifacts_in_tmp.rglob("*") if p.is_file())
    second = builtin_domains_register()

    # then three public, ownerless built-ins exist, and the second call added nothing
    assert [d.slug for d in first] == ["sinusoid", "gp-1d", "digits"]
    assert [d.pk for d in second] == [d.pk for d in first]
    assert SourceDomain.objects.count() == 3
    assert sorted(p for p in artifacts_in_tmp.rglob("*") if p.is_file()) == files
    for domain in first:
        assert (domain.origin, domain.owner, domain.visibility) == ("builtin", None, "public")
        assert domain.citation


def test_digits_has_ten_classes_of_ink_high_images(artifacts_in_tmp):
    # given the registered built-ins
    builtin_domains_register()

    # when the digits domain is read back
    digits = SourceDomain.objects.get(slug="digits")
    arrays = load_image_arrays(io.BytesIO(artifact_read(digits.arrays_file)))

    # then it holds scikit-learn's 1,797 digits as 10 ungrouped classes, 28x28, ink high
    assert (digits.class_count, digits.example_count) == (10, 1797)
    assert digits.modality == "image_classification"
    assert [c["name"] for c in digits.classes] == [str(d) for d in range(10)]
    assert sum(c["count"] for c in digits.classes) == 1797
    assert digits.class_groups == []
    assert arrays.images.shape == (1797, 28, 28)
    assert arrays.class_groups == ("",) * 10
    assert np.array_equal(arrays.labels, np.sort(arrays.labels))
    assert arrays.images[:, :, :2].mean() < 10  # the side columns are background, i.e. low
    assert 40 < arrays.images.mean() < 128
    assert len(digits.content_sha256) == 64
    assert digits.arrays_size == len(artifact_read(digits.arrays_file))
    # and every class has a thumbnail
    thumbs = artifacts_in_tmp / "domains" / "digits" / "thumbs"
    assert sorted(p.name for p in thumbs.iterdir()) == sorted(f"{i}.png" for i in range(10))


def test_function_builtins_keep_their_generators():
    # given the registered built-ins
    builtin_domains_register()

    # when the function domains are read back
    sinusoid = SourceDomain.objects.get(slug="sinusoid")
    gp = SourceDomain.objects.get(slug="gp-1d")

    # then they hold their generators, no examples, and the hash of the canonical generator
    assert sinusoid.generator == {
        "family": "sinusoid",
        "amplitude": [0.1, 5.0],
        "phase": [0.0, math.pi],
        "x_range": [-5.0, 5.0],
    }
    assert gp.generator["kernel"] == "rbf"
    assert (sinusoid.class_count, sinusoid.example_count, sinusoid.arrays_file) == (0, 0, "")
    canonical = json.dumps(sinusoid.generator, sort_keys=True, separators=(",", ":"))
    assert sinusoid.content_sha256 == hashlib.sha256(canonical.encode()).hexdigest()
    assert "Finn" in sinusoid.citation and "Garnelo" in gp.citation


@pytest.mark.parametrize("generator", [builtin_domains.SINUSOID_GENERATOR, builtin_domains.GP_1D_GENERATOR])
def test_generators_map_onto_the_engines_function_families(generator):
    # given a built-in generator

    # when it is turned into the engine's family parameters
    name, params = builtin_domains.family_params(generator)

    # then the engine accepts them, and they equal the engine's defaults
    assert FunctionFamily.from_spec(name, params) == FunctionFamily.from_spec(name)


def test_a_user_domain_holding_a_builtin_name_is_left_alone():
    # given a user's function domain that took the name "digits"
    generator = {**builtin_domains.SINUSOID_GENERATOR, "x_range": [0.0, 1.0]}
    function_domain(name="digits", generator=generator, origin="upload")

    # when the built-ins are registered
    registered = builtin_domains_register()

    # then the two others are added and the user's domain is untouched
    assert [d.slug for d in registered] == ["sinusoid", "gp-1d"]
    assert SourceDomain.objects.get(slug="digits").modality == "function_regression"


def test_function_domains_refuse_unknown_families_and_duplicates():
    # given the built-ins
    builtin_domains_register()

    # when a function domain repeats a built-in generator, or names no known family, then it is refused
    with pytest.raises(InvalidInput, match="already in the catalog as domain 'sinusoid'"):
        function_domain(name="Another sinusoid")
    with pytest.raises(InvalidInput, match="unknown function family"):
        function_domain(name="Cubic", generator={"family": "cubic"})


def test_the_command_registers_and_reports():
    # given an empty catalog
    out = io.StringIO()

    # when the command runs twice
    call_command("register_builtin_domains", stdout=out)
    call_command("register_builtin_domains", stdout=out)

    # then it reports what it added, then what was present
    lines = out.getvalue().splitlines()
    assert lines[:3] == [
        "added: sinusoid (generator sinusoid)",
        "added: gp-1d (generator gp-1d)",
        "added: digits (10 classes, 1797 images)",
    ]
    assert all(line.startswith("present: ") for line in lines[3:]) and len(lines) == 6
