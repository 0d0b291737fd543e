"""MLflow Model Registry REST compatibility: the routes the mlflow client calls."""
