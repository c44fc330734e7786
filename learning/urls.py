"""Page URLs of the knowledge base."""

from django.urls import path

from learning import views

urlpatterns = [
    path("", views.home, name="home"),
    path("domains/", views.domain_list, name="domain-list"),
    path("domains/new/", views.domain_upload, name="domain-upload"),
    path("domains/<slug:slug>/", views.domain_detail, name="domain-detail"),
    path("domains/<slug:slug>/thumbs/<int:index>.png", views.domain_thumbnail, name="domain-thumbnail"),
    path("models/", views.model_list, name="model-list"),
    path("models/<int:pk>/", views.model_detail, name="model-detail"),
    path("models/<int:pk>/try/", views.model_try, name="model-try"),
    path("models/<int:pk>/samples/", views.model_samples, name="model-samples"),
    path("models/<int:pk>/weights/", views.model_weights, name="model-weights"),
    path("models/<int:pk>/card.md", views.model_card, name="model-card"),
    path("task-specs/", views.task_spec_list, name="taskspec-list"),
    path("task-specs/<int:pk>/", views.task_spec_detail, name="taskspec-detail"),
    path("compare/", views.compare, name="compare"),
    path("transfer/", views.transfer_matrix, name="transfer-matrix"),
    path("transfer/recommend/", views.transfer_recommend, name="transfer-recommend"),
]
