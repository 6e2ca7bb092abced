"""The data plane: runtimes, replica workers, router, batcher and codecs. Model code runs only in replica processes."""
