"""An adapted image is found again by its tag, and a changed source image gets a new one."""

from __future__ import annotations

from envfarm.sandbox.foreign_images import adapted_tag, is_native


def test_tag_follows_the_source_image_and_what_was_adapted():
    tag = adapted_tag("swebench/sweb.eval.x86_64.django_1776_django-11099:latest", "sha256:aaa", "abc", "")
    assert tag.startswith("envfarm-adapted/sweb.eval.x86_64.django_1776_django-11099:")
    assert adapted_tag("swebench/sweb.eval.x86_64.django_1776_django-11099:latest", "sha256:aaa", "abc", "") == tag
    assert adapted_tag("swebench/sweb.eval.x86_64.django_1776_django-11099:latest", "sha256:bbb", "abc", "") != tag
    assert adapted_tag("swebench/sweb.eval.x86_64.django_1776_django-11099:latest", "sha256:aaa", "abd", "") != tag
    assert adapted_tag("reg:5000/x/Y@sha256:ff", "sha256:aaa", "", "source a") .startswith("envfarm-adapted/y:")


def test_native_images_are_envfarms_own_or_adapted():
    assert is_native({"envfarm.spec": "1"}) and is_native({"envfarm.adapted-from": "sha256:aaa"})
    assert not is_native({}) and not is_native(None) and not is_native({"maintainer": "someone"})
