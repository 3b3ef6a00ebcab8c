"""What every topic shares: the command line (`cli`), the tracked run (`runner`), the data
sets and file loaders (`datasets`), shared Keras nets (`models`) and the list of topics
(`registry`). Nothing here imports TensorFlow at import time.
"""
