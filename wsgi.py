"""`gunicorn wsgi:app` serves this."""

from dotenv import load_dotenv

from amazonsender.web import create_app

load_dotenv()
app = create_app()
