"""The catalog pages: every page renders with real rows, filters narrow, private entries stay hidden."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from PIL import Image

from learning.artifacts import artifact_save
from learning.models import MetaModel, SourceDomain, TaskSpec, Visibility
from learning.services.models import evaluation_create, metamodel_register
from learning.services.task_specs import task_spec_create
from tests.weights import model_weights

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """A cheap hasher: these tests check pages, not password storage (autouse runs before ``user``)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (28, 28), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_domain(
    name: str,
    *,
    owner=None,
    visibility=Visibility.PUBLIC,
    origin=SourceDomain.Origin.UPLOAD,
    description: str = "",
    groups: dict[str, int] | None = None,
) -> SourceDomain:
    """An image domain row with one thumbnail per class in artifact storage, as an import leaves it."""
    groups = groups or {"Latin": 3, "Greek": 3}
    classes = [{"name": f"{g}-{i}", "group": g, "count": 20} for g, n in groups.items() for i in range(n)]
    slug = name.lower().replace(" ", "-")
    domain = SourceDomain.objects.create(
        name=name,
        slug=slug,
        modality=SourceDomain.Modality.IMAGE_CLASSIFICATION,
        origin=origin,
        description=description,
        citation="Lake et al. 2015",
        license="MIT",
        owner=owner,
        visibility=visibility,
        content_sha256=hashlib.sha256(name.encode()).hexdigest(),
        classes=classes,
        class_groups=[{"name": g, "class_count": n} for g, n in sorted(groups.items())],
        class_count=len(classes),
        example_count=20 * len(classes),
    )
    for index in range(len(classes)):
        artifact_save(f"domains/{slug}/thumbs/{index}.png", _png((index * 40 % 256, 80, 160)))
    return domain


def _function_domain() -> SourceDomain:
    return SourceDomain.objects.create(
        name="Sinusoid",
        slug="sinusoid",
        modality=SourceDomain.Modality.FUNCTION_REGRESSION,
        origin=SourceDomain.Origin.BUILTIN,
        description="Sine waves of random amplitude and phase.",
        generator={"family": "sinusoid", "amplitude": [0.1, 5.0], "phase": [0.0, 3.14159]},
    )


@pytest.fixture
def catalog(user):
    """A small real catalog: public and private domains, a task spec, a model lineage, evaluations."""
    omniglot = _image_domain(
        "Omniglot Mini",
        origin=SourceDomain.Origin.BUILTIN,
        description="Handwritten characters from many alphabets.",
    )
    sinusoid = _function_domain()
    secret = _image_domain(
        "Secret Glyphs", owner=user, visibility=Visibility.PRIVATE, description="Unpublished glyphs."
    )
    spec = task_spec_create(
        domain=omniglot,
        n_way=2,
        k_shot=1,
        query_size=5,
        seed=7,
        split={"by": "group", "meta_train": ["Latin"], "meta_val": [], "meta_test": ["Greek"]},
    )
    base = metamodel_register(
        name="ProtoNet Omniglot",
        algorithm="protonet",
        architecture="conv4",
        weights=model_weights("protonet", seed=0),
        trained_on=[omniglot],
        task_spec=spec,
        hyperparameters={"lr": 0.001, "steps": 2000},
        metrics={"train_accuracy": 0.991},
    )
    child = metamodel_register(
        name="ProtoNet fine-tuned",
        algorithm="protonet",
        architecture="conv4",
        weights=model_weights("protonet", seed=1),
        trained_on=[omniglot],
        parent=base,
    )
    maml = metamodel_register(
        name="MAML Sinusoid",
        algorithm="maml",
        architecture="mlp",
        weights=model_weights("maml", arch="mlp"),
        trained_on=[sinusoid],
        description="Regression baseline.",
    )
    hidden = metamodel_register(
        name="Hidden model",
        algorithm="maml",
        architecture="conv4",
        weights=model_weights("maml"),
        trained_on=[secret],
        owner=user,
        visibility=Visibility.PRIVATE,
    )
    evaluation_create(
        model=base,
        target_domain=omniglot,
        task_spec=spec,
        shots=1,
        metric="accuracy",
        mean=0.9734,
        ci95=0.0042,
        episodes=600,
        baseline_mean=0.612,
        baseline_ci95=0.011,
    )
    evaluation_create(
        model=maml, target_domain=sinusoid, shots=5, metric="mse", mean=0.0123, ci95=0.0011, episodes=600
    )
    return {
        "omniglot": omniglot,
        "sinusoid": sinusoid,
        "secret": secret,
        "spec": spec,
        "base": base,
        "child": child,
        "maml": maml,
        "hidden": hidden,
    }


def _text(response) -> str:
    return response.content.decode()


# --- every page renders, anonymous and logged in ---------------------------------------------------


@pytest.mark.parametrize("logged_in", [False, True], ids=["anonymous", "logged-in"])
def test_every_page_renders_with_real_rows(client, user, catalog, logged_in):
    # given a catalog, and a visitor who may be logged in
    if logged_in:
        client.force_login(user)
    pages = {
        reverse("home"): "ProtoNet Omniglot",
        reverse("domain-list"): "Omniglot Mini",
        reverse("domain-detail", args=["omniglot-mini"]): "ProtoNet fine-tuned",
        reverse("domain-detail", args=["sinusoid"]): "amplitude",
        reverse("model-list"): "MAML Sinusoid",
        reverse("model-detail", args=[catalog["base"].pk]): "97.3% ± 0.4",
        reverse("taskspec-list"): catalog["spec"].name,
        reverse("taskspec-detail", args=[catalog["spec"].pk]): catalog["spec"].identity_hash,
        reverse("login"): "Log in",
        reverse("signup"): "Create an account",
    }
    if logged_in:
        del pages[reverse("login")], pages[reverse("signup")]  # both send a logged-in user home

    for url, expected in pages.items():
        # when each page is fetched
        response = client.get(url)

        # then it renders and shows its rows
        assert response.status_code == 200, url
        assert expected in _text(response), url


def test_navigation_shows_who_is_logged_in_and_a_post_logout(client, user):
    # given a logged-in user
    client.force_login(user)

    # when the home page renders
    html = _text(client.get(reverse("home")))

    # then the header names them and offers a log-out form that posts with a CSRF token
    assert "Signed in as <strong>ada</strong>" in html
    logout = re.search(r'<form method="post" action="/accounts/logout/".*?</form>', html, re.S)
    assert logout and "csrfmiddlewaretoken" in logout.group(0)
    assert 'href="/api/docs/"' in html


def test_home_shows_counts_recent_entries_and_builtin_domains(client, catalog):
    # given a catalog with one private domain and one private model (not the anonymous visitor's)

    # when an anonymous visitor opens the dashboard
    response = client.get(reverse("home"))

    # then the counts cover only public entries, and the lists show the latest ones
    assert response.context["counts"] == {"domains": 2, "task_specs": 1, "models": 3, "evaluations": 2}
    html = _text(response)
    assert 'data-count="models">3<' in html
    assert 'data-live-counts="/ws/catalog/"' in html
    assert "Hidden model" not in html
    assert "97.3% ± 0.4" in html
    builtin = [d.name for d in response.context["builtin_domains"]]
    assert builtin == ["Sinusoid", "Omniglot Mini"]


def test_results_are_formatted_as_percent_with_ci_and_baseline(client, catalog):
    # given a model evaluated at 97.34% ± 0.42 against a 61.2% ± 1.1 baseline

    # when its page renders
    html = _text(client.get(reverse("model-detail", args=[catalog["base"].pk])))

    # then the numbers read as a person would write them
    assert "97.3% ± 0.4" in html
    assert "61.2% ± 1.1" in html
    assert "+36.1 pts" in html
    assert "600" in html
    assert catalog["base"].weights_sha256 in html
    assert filesizeformat(catalog["base"].weights_size) in html
    assert catalog["base"].weights_size == len(model_weights("protonet", seed=0))


# --- lists: search, filters, pagination ------------------------------------------------------------


def _names(response, key: str = "page") -> list[str]:
    return [row.name for row in response.context[key].object_list]


def test_domain_search_and_filters_narrow_the_list(client, catalog):
    # given two public domains, one image and one function domain

    # when the list is searched and filtered
    everything = client.get(reverse("domain-list"))
    by_description = client.get(reverse("domain-list"), {"q": "sine waves"})
    by_modality = client.get(reverse("domain-list"), {"modality": "image_classification"})
    by_origin = client.get(reverse("domain-list"), {"origin": "upload"})

    # then each narrows to what matches, and the private domain never shows
    assert sorted(_names(everything)) == ["Omniglot Mini", "Sinusoid"]
    assert _names(by_description) == ["Sinusoid"]
    assert _names(by_modality) == ["Omniglot Mini"]
    assert _names(by_origin) == []
    assert "No domain matches" in _text(by_origin)


def test_domain_list_shows_the_owner_their_private_domain(client, user, catalog):
    # given the owner of the private domain
    client.force_login(user)

    # when they filter to uploads
    response = client.get(reverse("domain-list"), {"origin": "upload"})

    # then they see it, marked private
    assert _names(response) == ["Secret Glyphs"]
    assert "private" in _text(response)


def test_domain_list_paginates(client):
    # given 23 domains, more than one page of 20
    for i in range(23):
        SourceDomain.objects.create(
            name=f"Domain {i:02d}",
            slug=f"domain-{i:02d}",
            origin="upload",
            modality=SourceDomain.Modality.IMAGE_CLASSIFICATION,
        )

    # when the first and second pages are fetched, keeping a filter
    first = client.get(reverse("domain-list"), {"q": "Domain"})
    second = client.get(reverse("domain-list"), {"q": "Domain", "page": 2})

    # then the pages split the rows, and the next link keeps the search
    assert len(_names(first)) == 20
    assert len(_names(second)) == 3
    assert not set(_names(first)) & set(_names(second))
    assert 'href="?q=Domain&amp;page=2"' in _text(first)
    assert "Page 2 of 2" in _text(second)


def test_model_search_and_filters_narrow_the_list(client, catalog):
    # given three public models (two protonets on Omniglot, one MAML on Sinusoid)
    url = reverse("model-list")

    # when the list is searched and filtered
    searched = client.get(url, {"q": "fine-tuned"})
    by_algorithm = client.get(url, {"algorithm": "maml"})
    by_architecture = client.get(url, {"architecture": "conv4"})
    by_domain = client.get(url, {"domain": "sinusoid"})
    combined = client.get(url, {"algorithm": "protonet", "domain": "sinusoid"})

    # then each narrows to what matches; the private model is never among them
    assert _names(searched) == ["ProtoNet fine-tuned"]
    assert _names(by_algorithm) == ["MAML Sinusoid"]
    assert sorted(_names(by_architecture)) == ["ProtoNet Omniglot", "ProtoNet fine-tuned"]
    assert _names(by_domain) == ["MAML Sinusoid"]
    assert _names(combined) == []


def test_model_filters_offer_only_values_the_user_can_see(client, catalog):
    # given a private model trained on a private domain

    # when a stranger opens the model list
    form = client.get(reverse("model-list")).context["form"]

    # then the domain filter does not name the private domain
    domain_choices = [value for value, _ in form.fields["domain"].choices]
    assert domain_choices == ["", "omniglot-mini", "sinusoid"]


def test_model_list_paginates(client, catalog):
    # given 22 more models, 25 in all
    weights = model_weights("maml", arch="mlp")
    for i in range(22):
        metamodel_register(name=f"Bulk {i:02d}", algorithm="maml", architecture="mlp", weights=weights)

    # when page 2 is fetched
    page_two = client.get(reverse("model-list"), {"page": 2})

    # then it holds the rest
    assert len(_names(page_two)) == 5
    assert MetaModel.objects.count() == 26


# --- detail pages ------------------------------------------------------------------------------------


def test_domain_detail_shows_facts_groups_thumbnails_specs_and_models(client, catalog):
    # given an image domain with two groups, six classes, a task spec and two models
    domain = catalog["omniglot"]

    # when its page renders
    response = client.get(reverse("domain-detail", args=[domain.slug]))
    html = _text(response)

    # then it shows what the domain is, its groups, a thumbnail per class, its spec and its models
    for text in ("Handwritten characters", "Lake et al. 2015", "MIT", "Built in", domain.content_sha256):
        assert text in html
    assert re.search(r"<td>Greek</td><td class=\"num\">3</td>", html)
    thumbs = re.findall(r'src="(/domains/omniglot-mini/thumbs/\d+\.png)"', html)
    assert len(thumbs) == 6
    assert catalog["spec"].name in html
    assert [m.name for m in response.context["models"]] == ["ProtoNet fine-tuned", "ProtoNet Omniglot"]


def test_function_domain_detail_shows_generator_parameters_not_images(client, catalog):
    # when the sinusoid domain's page renders
    html = _text(client.get(reverse("domain-detail", args=["sinusoid"])))

    # then it lists the generator parameters and has no image grid
    assert "Generator parameters" in html
    assert "amplitude" in html and "[0.1, 5.0]" in html
    assert "Sample images" not in html
    assert "MAML Sinusoid" in html


def test_model_detail_shows_lineage_training_and_hyperparameters(client, catalog):
    # given a child model transferred from a public parent

    # when the child's page renders
    response = client.get(reverse("model-detail", args=[catalog["child"].pk]))

    # then the parent chain and the training domain are linked
    assert [m.name for m in response.context["lineage"]] == ["ProtoNet Omniglot"]
    html = _text(response)
    assert f'href="/models/{catalog["base"].pk}/"' in html
    assert 'href="/domains/omniglot-mini/"' in html

    # and the parent's page lists its child, its spec, hyperparameters and metrics
    parent_html = _text(client.get(reverse("model-detail", args=[catalog["base"].pk])))
    assert "ProtoNet fine-tuned" in parent_html
    assert f'href="/task-specs/{catalog["spec"].pk}/"' in parent_html
    assert "0.001" in parent_html and "2,000" in parent_html and "0.991" in parent_html


def test_mse_results_are_shown_as_numbers(client, catalog):
    # when the regression model's page renders
    html = _text(client.get(reverse("model-detail", args=[catalog["maml"].pk])))

    # then the MSE reads as a plain number with its CI, and a missing baseline as a dash
    assert "0.0123 ± 0.0011" in html
    assert "Mean squared error" in html


def test_task_spec_detail_shows_its_shape_and_identity(client, catalog):
    # given a 2-way 1-shot spec with seed 7
    spec = catalog["spec"]

    # when its page renders
    response = client.get(reverse("taskspec-detail", args=[spec.pk]))
    html = _text(response)

    # then every field that decides the episodes is shown
    assert response.context["spec"] == spec
    assert re.search(r"<dt>n-way</dt><dd>2</dd>", html)
    assert re.search(r"<dt>k-shot</dt><dd>1</dd>", html)
    assert re.search(r"<dt>Query size</dt><dd>5</dd>", html)
    assert re.search(r"<dt>Seed</dt><dd>7</dd>", html)
    assert re.search(r"<dt>Within group</dt><dd>no</dd>", html)
    assert spec.identity_hash in html
    assert "Latin" in html and "Greek" in html


# --- privacy -------------------------------------------------------------------------------------------


@pytest.fixture
def private_urls(catalog):
    return [
        reverse("domain-detail", args=[catalog["secret"].slug]),
        reverse("domain-thumbnail", args=[catalog["secret"].slug, 0]),
        reverse("model-detail", args=[catalog["hidden"].pk]),
    ]


def test_private_entries_are_404_for_anonymous_visitors(client, private_urls):
    for url in private_urls:
        # when an anonymous visitor asks for a private entry
        response = client.get(url)
        # then it does not exist for them
        assert response.status_code == 404, url


def test_private_entries_are_404_for_strangers(client, stranger, private_urls):
    # given a logged-in user who does not own the entries
    client.force_login(stranger)
    for url in private_urls:
        # when they ask for them
        response = client.get(url)
        # then it does not exist for them
        assert response.status_code == 404, url


def test_private_entries_are_visible_to_their_owner(client, user, private_urls):
    # given the owner
    client.force_login(user)
    for url in private_urls:
        # when they ask for their private entries
        response = client.get(url)
        # then they get them
        assert response.status_code == 200, url


def test_private_task_spec_is_404_for_a_stranger(client, stranger, user, catalog):
    # given a private task spec over the private domain
    spec = task_spec_create(
        domain=catalog["secret"],
        n_way=2,
        k_shot=1,
        query_size=5,
        owner=user,
        visibility=Visibility.PRIVATE,
        split={"by": "group", "meta_train": ["Latin"], "meta_val": [], "meta_test": ["Greek"]},
    )
    url = reverse("taskspec-detail", args=[spec.pk])

    # when a stranger and then the owner ask for it
    client.force_login(stranger)
    as_stranger = client.get(url)
    client.force_login(user)
    as_owner = client.get(url)

    # then only the owner sees it
    assert as_stranger.status_code == 404
    assert as_owner.status_code == 200
    assert TaskSpec.objects.filter(pk=spec.pk).exists()


def test_public_model_does_not_name_a_private_training_domain(client, user, catalog):
    # given a public model trained on a public and a private domain
    model = metamodel_register(
        name="Mixed",
        algorithm="maml",
        architecture="conv4",
        weights=model_weights("maml", seed=1),
        trained_on=[catalog["omniglot"], catalog["secret"]],
        owner=user,
    )

    # when anonymous visitors see the model page and list
    detail = _text(client.get(reverse("model-detail", args=[model.pk])))
    listing = _text(client.get(reverse("model-list"), {"q": "Mixed"}))

    # then the public domain is named and the private one is not
    for html in (detail, listing):
        assert "Omniglot Mini" in html
        assert "Secret Glyphs" not in html


# --- thumbnails ------------------------------------------------------------------------------------------


def test_thumbnail_streams_the_png_of_a_visible_domain(client, catalog):
    # when the first class's thumbnail of a public domain is fetched
    response = client.get(reverse("domain-thumbnail", args=["omniglot-mini", 0]))

    # then it is that PNG
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    body = b"".join(response.streaming_content)
    assert body.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(body)).size == (28, 28)


def test_thumbnail_beyond_the_classes_is_404(client, catalog):
    # when a class index past the last class is asked for
    response = client.get(reverse("domain-thumbnail", args=["omniglot-mini", 6]))

    # then there is no such thumbnail
    assert response.status_code == 404


def test_thumbnail_of_a_private_domain_is_404_to_a_stranger(client, stranger, catalog):
    # given a stranger
    client.force_login(stranger)

    # when they ask for a private domain's thumbnail
    response = client.get(reverse("domain-thumbnail", args=[catalog["secret"].slug, 0]))

    # then it does not exist for them
    assert response.status_code == 404


# --- assets ---------------------------------------------------------------------------------------------


def test_pages_reference_no_external_urls(client, user, catalog):
    # given a logged-in user (the header then has the most links)
    client.force_login(user)
    urls = [reverse("home"), reverse("domain-detail", args=["omniglot-mini"]), reverse("domain-upload")]

    for url in urls:
        # when the page renders
        html = _text(client.get(url))

        # then every src and href is local: no CDN, nothing fetched from elsewhere
        refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)["\']', html)
        assert refs, url
        external = [ref for ref in refs if re.match(r"\s*(https?:)?//", ref, re.I)]
        assert external == [], url
        assert "/static/css/metakb.css" in html


def test_favicon_ico_leads_to_the_site_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("/static/favicon.svg")
    icon = client.get(response["Location"])
    assert icon.status_code == 200 and icon["Content-Type"].startswith("image/svg")


def test_a_domain_with_many_classes_pages_through_all_of_them(client):
    from tests.learning.factories import image_domain

    domain = image_domain(name="Many", classes={f"class{i:03d}": 2 for i in range(60)})

    first = client.get(reverse("domain-detail", args=[domain.slug])).content.decode()
    second = client.get(reverse("domain-detail", args=[domain.slug]), {"page": 2}).content.decode()

    assert "Classes 1-48 of 60" in first and "class047" in first and "class048" not in first
    assert 'rel="next"' in first
    assert "Classes 49-60 of 60" in second and "class048" in second and "class059" in second
    # the thumbnails of page 2 are of the classes listed there, not of the first ones again
    assert reverse("domain-thumbnail", args=[domain.slug, 59]) in second
    assert reverse("domain-thumbnail", args=[domain.slug, 0]) not in second


def test_a_task_spec_page_lists_every_class_of_its_split(client):
    from tests.learning.factories import image_domain

    domain = image_domain(name="Thirty", classes={f"glyph{i:02d}": 2 for i in range(30)})
    spec = task_spec_create(domain=domain, n_way=2, k_shot=1, query_size=1)

    html = client.get(reverse("taskspec-detail", args=[spec.pk])).content.decode()

    for name in spec.split["meta_train"] + spec.split["meta_test"]:
        assert name in html
    assert f"<summary>{len(spec.split['meta_train'])}: " in html
