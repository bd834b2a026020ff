"""The IPython kernel extension researchers load with ``%load_ext flowblock``: magics, rich
results, widgets.
"""
