"""List pages reply to odd paging and sorting arguments without a server error."""

import pytest

LISTS = [
    "/admin/backups/alerts/", "/admin/backups/jobs/", "/admin/backups/runs/", "/admin/backups/silences/",
    "/admin/storage/", "/admin/notifications/deliveries/", "/admin/notifications/templates/",
    "/admin/notifications/webhooks/", "/admin/users/",
]


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("query", [
    "page=99999999999999999999", "page=-5", "page=abc", "sort=999", "page_size=1000000000000",
])
def test_list_odd_arguments(admin_client, url, query):
    response = admin_client.get(f"{url}?{query}")
    assert response.status_code < 500
