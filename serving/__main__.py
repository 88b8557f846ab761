"""``python -m serving``: run the API with settings from the environment."""

from serving.app import serve

if __name__ == "__main__":
    serve()
