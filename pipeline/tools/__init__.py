"""Commands around the dataset build: ``doctor`` (what a YouTube run needs), ``plan_command`` with
``cost_model`` (a catalog's Dataflow cost), ``procgen_dataset`` (the CoinRun case-study dataset) and
``demo_corpus`` (the built-in demo corpus).
"""
