# BotFactory production image. Every Render service runs it: the web command below, and `botfactory worker`,
# `botfactory events-consume` and `botfactory runtime-host` through render.yaml's dockerCommand.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml and pinned by constraints.txt, so a code change reuses this layer.
COPY pyproject.toml constraints.txt* ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt $(test -f constraints.txt && echo "-c constraints.txt") \
    && rm /tmp/requirements.txt

COPY . .
# Editable, so the code keeps finding alembic/, templates/, static/ and locales/ next to itself in /app.
RUN pip install --no-deps -e . \
    && pybabel compile -d locales -D messages \
    && useradd --system --create-home --uid 10001 --shell /usr/sbin/nologin botfactory \
    && mkdir -p /app/.data \
    && chown botfactory:botfactory /app/.data

# The code stays root-owned and read-only to the app; only .data/ (and $HOME, /tmp) are writable.
USER botfactory
EXPOSE 8000

# Shell form so ${PORT} (set by Render) expands; exec hands PID 1 to the server so it receives SIGTERM itself.
CMD botfactory db upgrade && exec botfactory serve --host 0.0.0.0 --port ${PORT:-8000}
