"""The Apache Beam dataset pipeline: keyword search -> yt-dlp download -> decord clips (16 s, 10 FPS, 160x90)
-> quality classifier -> WebDataset shards, with a Parquet manifest and auditable outcomes/stats."""
