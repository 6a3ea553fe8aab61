"""The three loops (ingest, evaluate, relay) and the shared run-until-stopped skeleton.

They call the store for every statement: no SQL text here.
"""
