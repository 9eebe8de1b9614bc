"""Hermetic test settings: CPU, offline, seeded."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

import games  # noqa: E402


def all_game_ids() -> list[str]:
    return [spec.id for spec in games.list_games()]


@pytest.fixture(params=all_game_ids())
def game_id(request) -> str:
    return request.param
