"""Source recommendation ranks real models by LogME (and LEEP/NCE with a head) on a target's examples."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from learning.models import MetaModel
from learning.recommend import recommend_sources
from learning.services.domains import builtin_domains_register
from tests.learning.factories import image_domain

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def sources(django_user_model, settings):
    """A ProtoNet, a MAML and a Neural Statistician meta-trained on the digits, in that order."""
    settings.JOB_HEARTBEAT_INTERVAL = 3600
    builtin_domains_register()
    django_user_model.objects.create_superuser(username="root", password="pw-root-123456")
    for algorithm in ("protonet", "maml", "statistician"):
        call_command(
            "metatrain",
            "--domain",
            "digits",
            "--algorithm",
            algorithm,
            "--n-way",
            "5",
            "--query",
            "5",
            "--hyperparameters",
            '{"steps": 5, "meta_batch": 1, "model": {"hidden": 8}}',
            "--name",
            f"{algorithm} source",
            stdout=io.StringIO(),
        )
    return tuple(MetaModel.objects.get(algorithm=a) for a in ("protonet", "maml", "statistician"))


def test_every_image_model_is_scored_and_heads_get_leep_and_nce(sources, user):
    protonet, maml, statistician = sources
    target = image_domain(name="Target", classes={f"c{i}": 6 for i in range(4)})

    ranking = recommend_sources(user=user, target=target)

    assert ranking.examples == 24 and ranking.classes == 4
    scored = {r.model.pk: r for r in ranking.recommendations}
    assert set(scored) == {protonet.pk, maml.pk, statistician.pk}
    assert [r.logme for r in ranking.recommendations] == sorted(
        (r.logme for r in ranking.recommendations), reverse=True
    )
    # a ProtoNet and a Neural Statistician have no classifier head
    assert scored[protonet.pk].leep is None and scored[statistician.pk].leep is None
    assert scored[maml.pk].leep is not None and scored[maml.pk].leep < 0 and scored[maml.pk].nce <= 0
    assert ranking.kendall_tau is None  # nothing measured on this target yet


def test_the_recommendation_page_renders_the_ranking(client, sources):
    target = image_domain(name="Target", classes={f"c{i}": 6 for i in range(4)})

    page = client.get(reverse("transfer-recommend"), {"domain": target.slug})

    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="ranking"' in html
    assert all(f"{a} source" in html for a in ("protonet", "maml", "statistician"))
    assert client.get(reverse("transfer-recommend")).status_code == 200
    assert client.get(reverse("transfer-recommend"), {"domain": "nowhere"}).status_code == 404


def test_a_function_domain_is_refused_with_a_message_not_a_crash(client, sources):
    for slug in ("sinusoid", "gp-1d"):
        page = client.get(reverse("transfer-recommend"), {"domain": slug})

        assert page.status_code == 400
        html = page.content.decode()
        assert 'id="recommend-error"' in html and "sources are ranked for image and text domains only" in html


def test_a_model_trained_on_the_target_ranks_after_the_transfers(sources, user):
    protonet, maml, _ = sources
    digits = protonet.trained_on.get()
    assert maml.trained_on.get() == digits
    target = image_domain(name="Target", classes={f"c{i}": 6 for i in range(4)})
    # Pretend the better-scoring model was trained on the target: it must drop below the other.
    ranking = recommend_sources(user=user, target=target)
    best = ranking.recommendations[0].model
    best.trained_on.set([target])

    reranked = recommend_sources(user=user, target=target)

    assert [r.model.pk for r in reranked.recommendations][-1] == best.pk
    assert reranked.recommendations[-1].trained_on_target
    assert not reranked.recommendations[0].trained_on_target
