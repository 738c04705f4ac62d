"""The related-items page's history mode in a real headless browser (tests/browser.py), on a version with a
context tower and item attributes: add items to the history by clicking (a search result, then a recommendation),
the list shown is the `recommend` answer for that history from an independent REST call, the history's own items
are not in it, k sets the number of rows, removing an item and Back / Forward follow the history, a reload keeps
it, and every row shows the item's attributes (year and genres here) in both modes."""

from types import SimpleNamespace

import numpy as np
import pytest
import requests

from modules import context_tower as ct
from modules import index as ib
from modules.export import export_serving_model
from pipeline.data import datasets
from pipeline.push import pusher
from serving.config import ServingConfig
from serving.rest import catalogue_from_server
from serving.server import serve
from tests.browser import skip_module_without_browser, start_chrome
from tests.serving.rest_fixtures import title_of
from tests.serving.test_page import related_shown, suggestion_ids, wait_for

skip_module_without_browser()

N = 400
GENRES = ("Drama", "Comedy", "Sci-Fi", "Noir", "Musical", "Western")


def year_of(j: int) -> int:
    return 1950 + j % 50


def genres_of(j: int) -> list:
    return [GENRES[j % 6], GENRES[(j // 6) % 6]] if j % 3 else [GENRES[j % 6]]


def shown_attributes(j: int) -> str:
    """What a row shows under the title: the attribute columns in catalogue order, lists joined by commas."""
    if j % 11 == 0:
        return ""  # items without attributes show none
    return f"{year_of(j)} · {', '.join(genres_of(j))}"


@pytest.fixture(scope="module")
def hpage(tmp_path_factory):
    root = tmp_path_factory.mktemp("page_history")
    emb = np.asarray(datasets.clustered_vectors(N, 8, clusters=12, seed=5), np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids, titles = [f"i{j}" for j in range(N)], [title_of(j) for j in range(N)]
    attributes = [{} if j % 11 == 0 else {"year": str(year_of(j)), "genres": genres_of(j)} for j in range(N)]
    config = ct.ContextTowerConfig(form="sequence", max_len=4, hidden_dim=8, num_layers=1, dropout=0.0)
    export_serving_model(str(root / "sm"), emb, ids, titles=titles, context_tower=ct.build_context_tower(config, emb))
    ib.build_index(emb, ids, str(root / "ix"), titles=titles, attributes=attributes, recall_queries=20)
    pusher.push(str(root / "sm"), str(root / "ix"), str(root / "serving_model"))
    server = serve(ServingConfig(str(root / "serving_model"), port=0, poll_seconds=5, rest_api_port=0), block=False)
    driver = start_chrome(root / "chromedriver.log", ("--window-size=1200,900",))
    try:
        yield dict(driver=driver, root=root, base=f"http://127.0.0.1:{server.rest.port}")
    finally:
        driver.quit()
        server.stop()


def rest_recommend(hpage, history, k):
    """The recommend answer for a history, from the REST API directly (not through the page)."""
    body = {"signature_name": "recommend", "instances": [{"history_ids": history, "k": k}]}
    r = requests.post(hpage["base"] + "/v1/models/pinsage:predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    p = r.json()["predictions"][0]
    return p["item_ids"], p["titles"]


def history_shown(driver):
    from selenium.webdriver.common.by import By

    return [li.get_attribute("data-item-id") for li in driver.find_elements(By.CSS_SELECTOR, "#history li")]


def attributes_shown(driver, selector="#related li"):
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, selector)
    return [" ".join(e.text for e in r.find_elements(By.CSS_SELECTOR, ".attrs")) for r in rows]


def wait_for_list(d, hpage, history, k, what):
    want = rest_recommend(hpage, history, k)[0]
    wait_for(d, lambda d: history_shown(d) == history and related_shown(d)[0] == want, what)
    return want


def test_items_endpoint_answers_attributes_for_ids(hpage):
    r = requests.get(hpage["base"] + "/v1/models/pinsage/items", params=[("id", "i5"), ("id", "i22"), ("id", "i5")])
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["item_ids"] == ["i5", "i22", "i5"] and out["titles"] == [title_of(5), title_of(22), title_of(5)]
    assert out["attributes"] == [{"year": "1955", "genres": genres_of(5)}, {}, {"year": "1955", "genres": genres_of(5)}]
    r = requests.get(hpage["base"] + "/v1/models/pinsage/items", params=[("id", "i5"), ("id", "nope")])
    assert r.status_code == 404 and "'nope'" in r.json()["error"]
    r = requests.get(hpage["base"] + "/v1/models/pinsage/items", params={"q": "i7", "limit": 1})
    assert r.json()["attributes"] == [{"year": "1957", "genres": genres_of(7)}]
    # a version that is not the loaded one is read from its files, attributes included
    away = SimpleNamespace(
        current=None, model_name="pinsage", model_dir=str(hpage["root"] / "serving_model" / "pinsage")
    )
    table = catalogue_from_server(away, "pinsage", 1)
    assert table.attributes_of([7, 11]) == [{"year": "1957", "genres": genres_of(7)}, {}]


def test_history_mode_follows_clicks_k_and_back(hpage):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = hpage["driver"]
    d.get(hpage["base"] + "/")
    wait_for(d, lambda d: "version" in d.find_element(By.ID, "model-info").text, "the model status line")
    radio = d.find_element(By.CSS_SELECTOR, '#mode input[value="history"]')
    assert radio.is_enabled() and not d.find_element(By.ID, "history-off").is_displayed()
    radio.click()
    wait_for(d, lambda d: d.find_element(By.ID, "history-panel").is_displayed(), "the history panel")
    assert history_shown(d) == [] and related_shown(d)[0] == []
    assert d.find_element(By.ID, "signature-name").text == "recommend"

    # a search result clicked: the history is that item, the list its recommendations
    box = d.find_element(By.ID, "search")
    box.send_keys("i12")
    wait_for(d, lambda d: suggestion_ids(d)[:1] == ["i12"], "i12 first among the suggestions")
    d.find_element(By.CSS_SELECTOR, '#suggestions button[data-item-id="i12"]').click()
    first = wait_for_list(d, hpage, ["i12"], 10, "the list for [i12]")
    assert "i12" not in first

    # a recommendation clicked: it joins the history, the list follows
    second = first[2]
    d.find_element(By.CSS_SELECTOR, f'#related button[data-item-id="{second}"]').click()
    both = wait_for_list(d, hpage, ["i12", second], 10, "the list for two items")
    ids, titles, scores = related_shown(d)
    assert len(ids) == 10 and not {"i12", second} & set(ids)
    assert titles == rest_recommend(hpage, ["i12", second], 10)[1]
    assert scores == sorted(scores, reverse=True)
    assert both != first
    # each row, and each history item, shows its attributes
    assert attributes_shown(d) == [shown_attributes(int(i[1:])) for i in ids]
    assert attributes_shown(d, "#history li") == [shown_attributes(12), shown_attributes(int(second[1:]))]
    assert any(attributes_shown(d)), "the fixture should give some rows attributes"
    assert d.find_element(By.ID, "error").get_attribute("hidden") is not None

    # k: 4 rows, the top 4 of the same history
    k = d.find_element(By.ID, "k")
    k.clear()
    k.send_keys("4", Keys.TAB)
    top4 = wait_for_list(d, hpage, ["i12", second], 4, "four rows")
    assert top4 == both[:4] and "k=4" in d.current_url

    # remove the first item: the list is the second item's alone
    d.find_element(By.CSS_SELECTOR, '#history li[data-item-id="i12"] button.remove').click()
    wait_for_list(d, hpage, [second], 4, "the list after a removal")

    # Back: the two-item history with k = 4, then with k = 10, then the one-item history
    d.back()
    wait_for_list(d, hpage, ["i12", second], 4, "Back to the two items, k = 4")
    d.back()
    wait_for_list(d, hpage, ["i12", second], 10, "Back to k = 10")
    assert d.find_element(By.ID, "k").get_attribute("value") == "10"
    d.back()
    assert wait_for_list(d, hpage, ["i12"], 10, "Back to [i12]") == first
    d.forward()
    wait_for_list(d, hpage, ["i12", second], 10, "Forward to the two items")

    # the URL holds the history: a fresh load shows the same list
    url = d.current_url
    d.get("about:blank")
    d.get(url)
    wait_for_list(d, hpage, ["i12", second], 10, "the history from the URL")
    assert d.find_element(By.CSS_SELECTOR, '#mode input[value="history"]').is_selected()


def test_item_mode_rows_show_attributes(hpage):
    from selenium.webdriver.common.by import By

    d = hpage["driver"]
    d.get("about:blank")
    d.get(hpage["base"] + "/#item=i5")
    wait_for(d, lambda d: len(related_shown(d)[0]) == 10, "i5's related items")
    wait_for(d, lambda d: d.find_element(By.ID, "current-attrs").text == shown_attributes(5), "i5's attributes")
    ids = related_shown(d)[0]
    assert attributes_shown(d) == [shown_attributes(int(i[1:])) for i in ids]
    assert d.find_element(By.ID, "current").text == title_of(5)
