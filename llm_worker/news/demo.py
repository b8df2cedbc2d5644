"""Demo headlines bundled with the package: what the news agent reads with no feed to reach.

A first run without internet should still sound like the product, so when every feed of a
turn fails the agent reads these instead and says once, at the start of the reply, that
they are demo headlines. ``NEWS_FEEDS=demo`` chooses them outright (a demo, a test, a
machine that must not fetch anything). The stories are invented for this purpose, carry
no date, and name their source as the demo set, so nobody takes them for real news.
"""

from __future__ import annotations

from llm_worker.news.feeds import FeedSource, Story

DEMO = "demo"  # the NEWS_FEEDS value that chooses these headlines
SCHEME = "demo://"  # FeedSource.url of a demo topic: demo://<language>/<topic>

# language -> (source name, notice when chosen, notice when no feed answered)
_NOTICES = {
    "en": (
        "Demo headlines",
        "Demo headlines: these are sample stories, not real news.",
        "Demo headlines: no news source reachable, so here are sample stories, not real news.",
    ),
    "zh-CN": (
        "演示新闻",
        "演示新闻：以下是示例内容，不是真实新闻。",
        "演示新闻：连不上任何新闻来源，以下是示例内容，不是真实新闻。",
    ),
    "es": (
        "Titulares de demostración",
        "Titulares de demostración: son noticias de ejemplo, no reales.",
        "Titulares de demostración: no hay ninguna fuente de noticias accesible; "
        "son noticias de ejemplo, no reales.",
    ),
    "fr": (
        "Titres de démonstration",
        "Titres de démonstration : ce sont des exemples, pas de vraies informations.",
        "Titres de démonstration : aucune source d'informations n'est joignable ; "
        "ce sont des exemples, pas de vraies informations.",
    ),
    "de": (
        "Demo-Schlagzeilen",
        "Demo-Schlagzeilen: Das sind Beispielmeldungen, keine echten Nachrichten.",
        "Demo-Schlagzeilen: Keine Nachrichtenquelle erreichbar; "
        "das sind Beispielmeldungen, keine echten Nachrichten.",
    ),
}

# language -> topic -> (title, summary) pairs. Invented, undated, harmless.
_STORIES: dict[str, dict[str, list[tuple[str, str]]]] = {
    "en": {
        "general": [
            (
                "City opens its first all-night public library",
                "The library in the old post office will stay open around the clock for a "
                "trial of six months. Staff say night shifts and students asked for it most.",
            ),
            (
                "River clean-up volunteers collect two tonnes of rubbish in a weekend",
                "More than four hundred people joined the clean-up along twelve kilometres of "
                "river bank. Organisers plan a second weekend in the spring.",
            ),
            (
                "New night train links three capitals",
                "The sleeper service runs three times a week and takes eleven hours end to "
                "end. Tickets start at the price of a budget flight.",
            ),
        ],
        "world": [
            (
                "Neighbouring countries agree to share weather radar data",
                "The agreement lets forecasters see storms crossing the border an hour "
                "earlier. It takes effect next month.",
            ),
            (
                "Island nation opens its first university",
                "Two hundred students began classes in marine science, nursing and teaching. "
                "Until now students had to study abroad.",
            ),
            (
                "Mountain villages vote to share a single school bus",
                "The three villages will split the cost of one electric bus. Parents say the "
                "new timetable saves children an hour a day.",
            ),
        ],
        "technology": [
            (
                "Chipmaker shows a processor that runs on a tenth of the power",
                "The company says the chip is meant for phones and small sensors. Independent "
                "tests have not been published yet.",
            ),
            (
                "Open-source voice assistant learns five new languages",
                "Volunteers recorded and checked the new voices over a year. The assistant "
                "runs without an internet connection.",
            ),
            (
                "Phone makers agree on a common repair manual format",
                "Repair shops will be able to read manuals from every maker in one tool. The "
                "first manuals appear this summer.",
            ),
        ],
        "business": [
            (
                "Small bakery chain becomes a cooperative owned by its staff",
                "The founders sold the twelve shops to their two hundred employees. Prices "
                "and opening hours stay the same.",
            ),
            (
                "Shipping company orders ten wind-assisted cargo ships",
                "The ships use tall rigid sails to cut fuel use by up to a third. The first "
                "one is due in two years.",
            ),
            (
                "Local market traders switch to a shared delivery van",
                "Thirty stalls now deliver in one van instead of many cars. Traders say "
                "costs fell and customers get their shopping sooner.",
            ),
        ],
        "science": [
            (
                "Astronomers spot a comet that will be visible without a telescope",
                "The comet should be brightest in about six weeks, low in the western sky "
                "after sunset. Clear dark skies will help.",
            ),
            (
                "Space probe sends back its first close images of an asteroid",
                "The pictures show boulders and a long groove across the surface. The probe "
                "will map the asteroid for a year.",
            ),
            (
                "Researchers grow tomatoes in salty water",
                "The plants were bred over ten generations to tolerate sea water mixed with "
                "fresh water. Field trials start next season.",
            ),
        ],
        "sports": [
            (
                "Underdogs win the cup final on penalties",
                "The second division side held the champions to a draw after extra time. "
                "Their goalkeeper saved three penalties.",
            ),
            (
                "Marathon record falls on a cold and windy morning",
                "The winner finished forty seconds inside the old course record. More than "
                "twenty thousand runners took part.",
            ),
            (
                "Local swimmer qualifies for the world championships",
                "The nineteen year old won the national title in the two hundred metres. "
                "She trains at the town's outdoor pool.",
            ),
        ],
    },
    "zh-CN": {
        "general": [
            ("城市图书馆开始通宵开放", "老邮局里的图书馆将试行二十四小时开放半年。"),
            ("志愿者周末清理河岸垃圾两吨", "四百多人沿十二公里河岸参加了清理活动。"),
            ("新的夜行列车连接三座城市", "卧铺列车每周开行三次，全程十一个小时。"),
        ],
        "technology": [
            ("开源语音助手新增五种语言", "志愿者用一年时间录制并检查了新的声音。"),
        ],
    },
    "es": {
        "general": [
            (
                "La biblioteca de la ciudad abre toda la noche",
                "La biblioteca abrirá las veinticuatro horas durante seis meses de prueba.",
            ),
            (
                "Voluntarios recogen dos toneladas de basura junto al río",
                "Más de cuatrocientas personas limpiaron doce kilómetros de orilla.",
            ),
            (
                "Un nuevo tren nocturno une tres capitales",
                "El tren con literas circula tres veces por semana y tarda once horas.",
            ),
        ],
        "technology": [
            (
                "Un asistente de voz libre aprende cinco idiomas nuevos",
                "Voluntarios grabaron y revisaron las nuevas voces durante un año.",
            ),
        ],
    },
    "fr": {
        "general": [
            (
                "La bibliothèque de la ville ouvre toute la nuit",
                "La bibliothèque restera ouverte jour et nuit pendant six mois d'essai.",
            ),
            (
                "Des bénévoles ramassent deux tonnes de déchets au bord de la rivière",
                "Plus de quatre cents personnes ont nettoyé douze kilomètres de berge.",
            ),
            (
                "Un nouveau train de nuit relie trois capitales",
                "Le train couchettes circule trois fois par semaine et met onze heures.",
            ),
        ],
        "technology": [
            (
                "Un assistant vocal libre apprend cinq nouvelles langues",
                "Des bénévoles ont enregistré et vérifié les nouvelles voix pendant un an.",
            ),
        ],
    },
    "de": {
        "general": [
            (
                "Stadtbibliothek öffnet die ganze Nacht",
                "Die Bibliothek bleibt in einem halbjährigen Versuch rund um die Uhr offen.",
            ),
            (
                "Freiwillige sammeln zwei Tonnen Müll am Flussufer",
                "Mehr als vierhundert Menschen säuberten zwölf Kilometer Ufer.",
            ),
            (
                "Neuer Nachtzug verbindet drei Hauptstädte",
                "Der Schlafwagenzug fährt dreimal pro Woche und braucht elf Stunden.",
            ),
        ],
        "technology": [
            (
                "Freier Sprachassistent lernt fünf neue Sprachen",
                "Freiwillige haben die neuen Stimmen ein Jahr lang aufgenommen und geprüft.",
            ),
        ],
    },
}

LANGUAGES = tuple(_STORIES)


def _language(code: str) -> str:
    return code if code in _STORIES else "en"


def demo_sources(language: str = "en") -> list[FeedSource]:
    """One pseudo-feed per topic the demo set has in ``language`` (English when it has none)."""
    code = _language(language)
    return [FeedSource(topic, f"{SCHEME}{code}/{topic}") for topic in _STORIES[code]]


def is_demo(source: FeedSource) -> bool:
    return source.url.startswith(SCHEME)


def demo_stories(source: FeedSource) -> list[Story]:
    """The bundled stories behind a ``demo://<language>/<topic>`` source."""
    code, _, topic = source.url.removeprefix(SCHEME).partition("/")
    code = _language(code)
    name = _NOTICES[code][0]
    rows = _STORIES[code].get(topic, [])
    return [Story(title, summary, "", None, name, source.topic) for title, summary in rows]


def demo_notice(language: str, *, offline: bool) -> str:
    """The sentence that opens a reply read from the demo set."""
    _, chosen, unreachable = _NOTICES[_language(language)]
    return unreachable if offline else chosen
