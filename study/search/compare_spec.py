"""What an optimizer comparison is (study/search/compare.py runs it): saved as compare_spec.json.

Kept apart from the command so that `python -m study.run --help` does not import pydantic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from study.spec import SEED_MAX, _path_name

COMPARE_SPEC = "compare_spec.json"
SEARCH_NAME, CONFIRM_NAME = "search", "confirm"
TARGET_FRACTION = 0.95  # time to target: the first validation >= this fraction of the best value found


class CompareSpec(BaseModel):
    """The comparison: its search (equal budgets) and the seeds its configurations are confirmed with."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    storage: str = "studies"
    optimizers: tuple[str, ...] = Field(min_length=2)
    search: dict = Field(description="the search's SearchSpec (study/search/spec.py), as JSON")
    confirm_seeds: tuple[Annotated[int, Field(ge=0, le=SEED_MAX)], ...] = Field(min_length=1)
    target_fraction: float = Field(TARGET_FRACTION, gt=0, le=1)

    _name = field_validator("name")(_path_name("comparison name"))

    @field_validator("confirm_seeds")
    @classmethod
    def _fresh_distinct(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        return check_distinct(seeds)

    @property
    def directory(self) -> Path:
        return Path(self.storage).expanduser().resolve() / self.name

    @property
    def spec_file(self) -> Path:
        return self.directory / COMPARE_SPEC

    def search_spec(self):
        """The search phase as a validated SearchSpec (study/search/spec.py)."""
        from study.search.spec import SearchSpec

        return SearchSpec.model_validate(self.search)


def load(directory: str | Path) -> CompareSpec:
    import json

    path = Path(directory) / COMPARE_SPEC
    if not path.exists():
        raise ValueError(f"expects a comparison directory holding {COMPARE_SPEC}, but {directory} has none")
    return CompareSpec.model_validate(json.loads(path.read_text()))


def check_distinct(seeds: Sequence[int]) -> tuple[int, ...]:
    repeated = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if repeated:
        raise ValueError(f"--confirm-seeds expects distinct seeds, but {repeated} repeat; give N or distinct S,S,...")
    return tuple(seeds)
