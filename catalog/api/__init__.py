"""The catalog's REST API (Django REST framework): serializers, viewsets, permissions,
throttles, pagination, renderers and the JSON error format. config/api.py assembles the router."""
