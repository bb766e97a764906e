"""The plugin host: pluggy hook specifications, the registry of rules, models and datasets, and their options."""
