"""One video file's work, free of Beam: probing its streams (``probe``), cutting it into clips (``cut``), and
the long-lived child process that runs both so a decoder crash or hang fails one element (``isolation``).
"""
