"""Built-in plugins: rules, models, datasets and the CSV, TensorBoard, W&B and MLflow loggers,
through ngf's own hooks. Each is a module; a module that offers ``PLUGIN`` (the TensorBoard, W&B
and MLflow loggers, ``logger_base.RunLogger`` instances) is registered as that object."""

BUILTIN_PLUGINS = (
    "ngf.plugins.bp",
    "ngf.plugins.lra",
    "ngf.plugins.fa",
    "ngf.plugins.dfa",
    "ngf.plugins.dkp",
    "ngf.plugins.dtp",
    "ngf.plugins.local_search",
    "ngf.plugins.kp",
    "ngf.plugins.drtp",
    "ngf.plugins.pepita",
    "ngf.plugins.pc",
    "ngf.plugins.ddtp",
    "ngf.plugins.local_loss",
    "ngf.plugins.ff",
    "ngf.plugins.fg",
    "ngf.plugins.ep",
    "ngf.plugins.models",
    "ngf.plugins.resnet_plugin",
    "ngf.plugins.datasets",
    "ngf.plugins.csv_logger",
    "ngf.plugins.tensorboard_logger",
    "ngf.plugins.wandb_logger",
    "ngf.plugins.mlflow_logger",
)
