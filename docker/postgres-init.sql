-- One PostgreSQL for the team: a database for the Prefect server and one for MLflow's runs and registry.
CREATE DATABASE prefect OWNER rlgen;
CREATE DATABASE mlflow OWNER rlgen;
