"""Prefect beyond one flow: where the pipeline's branches run (threads, Dask, Ray, GPU slots) and the deployments."""
