"""Reading datasets and image collections: layouts, decoding, the image cache, faces."""
