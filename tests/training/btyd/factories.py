"""BTYD models with hand-set parameters, as if fitted."""

from typing import TypeVar

from training.btyd.fitting import FittedModel

Model = TypeVar("Model", bound=FittedModel)


def with_params(model: Model, **params: float) -> Model:
    """The model with its fitted attributes (`name_`) set by hand."""
    for name, value in params.items():
        setattr(model, f"{name}_", value)
    return model
