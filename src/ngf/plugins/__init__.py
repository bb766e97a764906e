"""Built-in plugins: rules, models, datasets and the CSV, TensorBoard, W&B and MLflow loggers,
through ngf's own hooks."""

BUILTIN_PLUGINS = (
    "ngf.plugins.bp",
    "ngf.plugins.lra",
    "ngf.plugins.fa",
    "ngf.plugins.dfa",
    "ngf.plugins.dtp",
    "ngf.plugins.local_search",
    "ngf.plugins.kp",
    "ngf.plugins.drtp",
    "ngf.plugins.pepita",
    "ngf.plugins.pc",
    "ngf.plugins.ddtp",
    "ngf.plugins.models",
    "ngf.plugins.resnet_plugin",
    "ngf.plugins.datasets",
    "ngf.plugins.csv_logger",
    "ngf.plugins.tensorboard_logger",
    "ngf.plugins.wandb_logger",
    "ngf.plugins.mlflow_logger",
)
