"""The registered pyfunc, logged as code (MLflow's models-from-code) rather than as a pickle."""

import mlflow
from training.pyfunc import VafaModel

mlflow.models.set_model(VafaModel())
