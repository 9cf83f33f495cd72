"""The typed seams between the data API and the layers above it (``master/data/seams.py``)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from master.data.connector import DataAPI
from master.data.errors import Conflict
from master.data.seams import AuthPolicy, EngineControls
from master.engine.engine import Engine
from master.www.auth import Authenticator


def _members(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items()
            if not name.startswith("_") and (callable(value) or isinstance(value, property))]


def _same_signatures(protocol: type, implementation: object) -> None:
    for name in _members(protocol):
        wanted = vars(protocol)[name]
        found = getattr(type(implementation), name)
        if isinstance(wanted, property):
            assert isinstance(found, property), name
            continue
        assert inspect.iscoroutinefunction(found) == inspect.iscoroutinefunction(wanted), name
        assert list(inspect.signature(found).parameters) == list(inspect.signature(wanted).parameters), name


def test_the_engine_provides_the_controls_the_data_api_asks_for() -> None:
    controls: EngineControls = Engine()  # mypy checks the seam; the lines below check it at run time
    assert isinstance(controls, EngineControls)
    assert {"stop_build", "rebuild", "cancel_buildrequest", "shutdown_worker", "force", "latent_state"} <= set(
        _members(EngineControls))
    _same_signatures(EngineControls, controls)
    assert controls.latent_state(1) is None  # no latent worker configured


def test_the_authenticator_provides_the_auth_policy(tmp_path: Path) -> None:
    policy: AuthPolicy = Authenticator(None, tmp_path)
    assert isinstance(policy, AuthPolicy)
    _same_signatures(AuthPolicy, policy)
    assert not policy.enabled and not policy.restricts_reads


def test_without_an_engine_the_controls_are_a_conflict(tmp_path: Path) -> None:
    data = DataAPI(None, basedir=tmp_path)
    assert data.basedir == tmp_path and data.engine is None and data.auth is None
    with pytest.raises(Conflict, match="no build engine runs on this master"):
        data.controls()
    engine = Engine()
    data.bind_engine(engine)
    assert data.controls() is engine
    data.bind_engine(None)
    with pytest.raises(Conflict):
        data.controls()
    auth = Authenticator(None, tmp_path)
    data.bind_auth(auth)
    assert data.auth is auth
