# SongGen Studio in a container (also usable as a Docker Space). The two steps are the README's:
#   pip install -c constraints.txt -e .   (dependencies first, for layer caching)
#   python app.py --host 0.0.0.0 --port 7860
# Keep your work outside the container: docker run -p 7860:7860 -v $PWD/workspace:/app/workspace songgen-studio
# (on a Space with persistent storage the studio uses /data/songgen-studio by itself).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY requirements.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt

COPY . .
RUN pip install --no-deps -e .
EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
