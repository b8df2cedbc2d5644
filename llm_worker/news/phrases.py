"""Everything the offline news agent says by itself, in each supported language.

The agent's replies are built from these phrases and the feeds' own headlines (which are
read as the feeds have them, so a Chinese session should read Chinese feeds:
``NEWS_FEEDS_ZH``). Placeholders: ``{label}`` what was read ("technology headlines"),
``{topic}`` a topic's name, ``{query}`` a search, ``{count}`` a count phrase,
``{topics}`` the topics on offer, ``{ordinal}``/``{title}``/``{source}`` for a story.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.languages import language


@dataclass(frozen=True, slots=True)
class Phrases:
    code: str
    no_sources: tuple[str, ...]
    nothing_read: tuple[str, ...]
    filler: str
    stop: str
    only_news: str
    greeting: str
    help: tuple[str, ...]  # the second one is "You can ask for {topics}."
    try_topics: str
    intro_top: str
    intro_topic: str
    label_top: str
    label_topic: str
    label_mentions: str
    label_search: str
    no_topic_source: tuple[str, ...]
    topic_mentions: str
    none_right_now: str
    search_none: str
    search_found: str
    one_story: str
    n_stories: str
    all_on_story: tuple[str, ...]
    only_read_one: str
    only_read_n: str
    last_of: str
    all_of: str
    more_intro: str
    earlier_intro: str
    first_one: tuple[str, ...]
    hint_one: str
    hint_many: str
    story: str
    from_source: str
    ordinals: tuple[str, ...]
    number: str  # past the ordinals: "Number {n}"
    topics: dict[str, str]  # topic name as said
    topic_news: str  # "{topic} news"
    top_headlines: str  # the first item of the topics phrase
    list_or: str  # ", or " before the last item
    list_sep: str
    headline: str  # "{ordinal}, {title}"
    terminator: str  # added to a phrase without an end mark

    def topic(self, name: str) -> str:
        return self.topics.get(name, name)


EN = Phrases(
    code="en",
    no_sources=(
        "I couldn't reach any news source.",
        "The NEWS_FEEDS setting chooses which feeds I read; set it to feeds this server can reach.",
    ),
    nothing_read=(
        "I haven't read you any headlines yet.",
        "Ask me for the news first, for example, what's the latest in technology?",
    ),
    filler="One moment, I'm checking the news.",
    stop="Okay. Just ask when you want more news.",
    only_news="Sorry, I can only help with the news.",
    greeting="Hello! I can read you the latest news.",
    help=(
        "I read the news from live headline feeds.",
        "You can ask for {topics}.",
        "You can also ask for news about a subject, like news about space.",
        "After the headlines, say tell me more about the first one, next, or repeat.",
    ),
    try_topics="Try asking for {topics}.",
    intro_top="Here are the top headlines.",
    intro_topic="Here are the latest {label}.",
    label_top="top headlines",
    label_topic="{topic} headlines",
    label_mentions="{topic} stories",
    label_search="stories about {query}",
    no_topic_source=(
        "I don't have a {topic} news source, and nothing in today's headlines is about {topic}.",
        "Try {topics}.",
    ),
    topic_mentions="I don't have a {topic} news source, but these headlines mention it.",
    none_right_now="There are no {label} right now.",
    search_none="I couldn't find any stories about {query} right now.",
    search_found="I found {count} about {query}.",
    one_story="one story",
    n_stories="{n} stories",
    all_on_story=("That's all I have on that story.", "Say next for the next one."),
    only_read_one="I only read one headline. Which one would you like?",
    only_read_n="I only read {n} headlines. Which one would you like?",
    last_of="That was the last of the {label} I have right now.",
    all_of="That's all the {label} I have right now.",
    more_intro="Here are more {label}.",
    earlier_intro="Here are the earlier {label}.",
    first_one=("That was the first one.", "Say next to go on."),
    hint_one="Say tell me more to hear about it.",
    hint_many="Ask for more about any of them, or say next.",
    story="{ordinal} story: {title}",
    from_source="That's from {source}",
    ordinals=("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth"),
    number="Number {n}",
    topics={},
    topic_news="{topic} news",
    top_headlines="the top headlines",
    list_or=", or ",
    list_sep=", ",
    headline="{ordinal}, {title}",
    terminator=".",
)

ZH = Phrases(
    code="zh-CN",
    no_sources=(
        "我连不上任何新闻来源。",
        "新闻来源由 NEWS_FEEDS 设置决定（中文会话用 NEWS_FEEDS_ZH），"
        "请设置成这台服务器能访问的源。",
    ),
    nothing_read=("我还没有给你读过新闻标题。", "请先让我读新闻，比如：今天有什么科技新闻？"),
    filler="请稍等，我正在查看新闻。",
    stop="好的。想听新闻的时候随时告诉我。",
    only_news="抱歉，我只能帮你听新闻。",
    greeting="你好！我可以给你读最新的新闻。",
    help=(
        "我从实时的新闻源读取新闻。",
        "你可以让我读{topics}。",
        "你也可以问某个话题的新闻，比如关于太空的新闻。",
        "读完标题后，可以说第一条详细说说、下一条，或者重复。",
    ),
    try_topics="试试让我读{topics}。",
    intro_top="以下是今天的要闻。",
    intro_topic="以下是最新的{label}。",
    label_top="要闻",
    label_topic="{topic}新闻",
    label_mentions="和{topic}有关的新闻",
    label_search="关于{query}的新闻",
    no_topic_source=(
        "我没有{topic}新闻的来源，今天的标题里也没有和{topic}有关的内容。",
        "试试{topics}。",
    ),
    topic_mentions="我没有{topic}新闻的来源，不过这些标题提到了它。",
    none_right_now="现在没有{label}。",
    search_none="现在找不到关于{query}的新闻。",
    search_found="我找到了{count}关于{query}的新闻。",
    one_story="一条",
    n_stories="{n}条",
    all_on_story=("这条新闻我就知道这么多。", "说下一条，听下一条新闻。"),
    only_read_one="我只读了一条标题。你想听哪一条？",
    only_read_n="我只读了{n}条标题。你想听哪一条？",
    last_of="这是我现在所有{label}里的最后一条。",
    all_of="我现在的{label}就这些了。",
    more_intro="以下是更多{label}。",
    earlier_intro="以下是前面的{label}。",
    first_one=("这已经是第一条了。", "说下一条继续。"),
    hint_one="说详细说说，听这条新闻的内容。",
    hint_many="想听哪一条的详情都可以告诉我，或者说下一条。",
    story="{ordinal}条新闻：{title}",
    from_source="来源：{source}",
    ordinals=("第一", "第二", "第三", "第四", "第五", "第六", "第七", "第八"),
    number="第{n}",
    topics={
        "general": "综合",
        "technology": "科技",
        "business": "财经",
        "sports": "体育",
        "science": "科学",
        "world": "国际",
    },
    topic_news="{topic}新闻",
    top_headlines="今日要闻",
    list_or="，或者",
    list_sep="、",
    headline="{ordinal}条，{title}",
    terminator="。",
)

ES = Phrases(
    code="es",
    no_sources=(
        "No he podido conectar con ninguna fuente de noticias.",
        "El ajuste NEWS_FEEDS (o NEWS_FEEDS_ES) elige las fuentes que leo; pon fuentes a las "
        "que este servidor pueda llegar.",
    ),
    nothing_read=(
        "Todavía no te he leído ningún titular.",
        "Pídeme primero las noticias, por ejemplo: ¿qué hay de nuevo en tecnología?",
    ),
    filler="Un momento, estoy consultando las noticias.",
    stop="Vale. Pídeme más noticias cuando quieras.",
    only_news="Lo siento, solo puedo ayudarte con las noticias.",
    greeting="¡Hola! Puedo leerte las últimas noticias.",
    help=(
        "Leo las noticias de fuentes de titulares en directo.",
        "Puedes pedirme {topics}.",
        "También puedes pedir noticias sobre un tema, como noticias sobre el espacio.",
        "Después de los titulares, di cuéntame más sobre la primera, siguiente o repite.",
    ),
    try_topics="Prueba a pedirme {topics}.",
    intro_top="Estos son los titulares principales.",
    intro_topic="Estos son los últimos {label}.",
    label_top="titulares principales",
    label_topic="titulares de {topic}",
    label_mentions="noticias de {topic}",
    label_search="noticias sobre {query}",
    no_topic_source=(
        "No tengo una fuente de noticias de {topic}, y ningún titular de hoy trata de {topic}.",
        "Prueba con {topics}.",
    ),
    topic_mentions="No tengo una fuente de noticias de {topic}, pero estos titulares lo mencionan.",
    none_right_now="Ahora mismo no hay {label}.",
    search_none="Ahora mismo no encuentro noticias sobre {query}.",
    search_found="He encontrado {count} sobre {query}.",
    one_story="una noticia",
    n_stories="{n} noticias",
    all_on_story=("Eso es todo lo que tengo sobre esa noticia.", "Di siguiente para la próxima."),
    only_read_one="Solo he leído un titular. ¿Cuál quieres?",
    only_read_n="Solo he leído {n} titulares. ¿Cuál quieres?",
    last_of="Esa era la última de los {label} que tengo ahora.",
    all_of="Esos son todos los {label} que tengo ahora.",
    more_intro="Aquí tienes más {label}.",
    earlier_intro="Aquí tienes los {label} anteriores.",
    first_one=("Esa era la primera.", "Di siguiente para continuar."),
    hint_one="Di cuéntame más para saber más.",
    hint_many="Pídeme más sobre cualquiera de ellas, o di siguiente.",
    story="{ordinal} noticia: {title}",
    from_source="Es de {source}",
    ordinals=("Primera", "Segunda", "Tercera", "Cuarta", "Quinta", "Sexta", "Séptima", "Octava"),
    number="Número {n}",
    topics={
        "general": "actualidad",
        "technology": "tecnología",
        "business": "economía",
        "sports": "deportes",
        "science": "ciencia",
        "world": "internacional",
    },
    topic_news="noticias de {topic}",
    top_headlines="los titulares principales",
    list_or=" o ",
    list_sep=", ",
    headline="{ordinal}, {title}",
    terminator=".",
)

FR = Phrases(
    code="fr",
    no_sources=(
        "Je n'ai pu joindre aucune source d'actualités.",
        "Le réglage NEWS_FEEDS (ou NEWS_FEEDS_FR) choisit les flux que je lis ; indiquez des "
        "flux que ce serveur peut joindre.",
    ),
    nothing_read=(
        "Je ne vous ai encore lu aucun titre.",
        "Demandez-moi d'abord les infos, par exemple : quoi de neuf en technologie ?",
    ),
    filler="Un instant, je consulte les actualités.",
    stop="D'accord. Demandez-moi les infos quand vous voulez.",
    only_news="Désolé, je ne peux vous aider qu'avec les actualités.",
    greeting="Bonjour ! Je peux vous lire les dernières actualités.",
    help=(
        "Je lis les actualités de flux de titres en direct.",
        "Vous pouvez demander {topics}.",
        "Vous pouvez aussi demander des nouvelles sur un sujet, comme l'espace.",
        "Après les titres, dites raconte-moi la première, suivant, ou répète.",
    ),
    try_topics="Essayez de demander {topics}.",
    intro_top="Voici les principaux titres.",
    intro_topic="Voici les derniers {label}.",
    label_top="principaux titres",
    label_topic="titres {topic}",
    label_mentions="articles sur {topic}",
    label_search="articles sur {query}",
    no_topic_source=(
        "Je n'ai pas de source d'actualités {topic}, et aucun titre du jour n'en parle.",
        "Essayez {topics}.",
    ),
    topic_mentions="Je n'ai pas de source d'actualités {topic}, mais ces titres en parlent.",
    none_right_now="Il n'y a pas de {label} pour le moment.",
    search_none="Je ne trouve aucun article sur {query} pour le moment.",
    search_found="J'ai trouvé {count} sur {query}.",
    one_story="un article",
    n_stories="{n} articles",
    all_on_story=("C'est tout ce que j'ai sur cet article.", "Dites suivant pour le prochain."),
    only_read_one="Je n'ai lu qu'un titre. Lequel voulez-vous ?",
    only_read_n="Je n'ai lu que {n} titres. Lequel voulez-vous ?",
    last_of="C'était le dernier des {label} que j'ai pour le moment.",
    all_of="C'est tout pour les {label} pour le moment.",
    more_intro="Voici d'autres {label}.",
    earlier_intro="Voici les {label} précédents.",
    first_one=("C'était le premier.", "Dites suivant pour continuer."),
    hint_one="Dites raconte-moi pour en savoir plus.",
    hint_many="Demandez-moi plus sur l'un d'eux, ou dites suivant.",
    story="{ordinal} article : {title}",
    from_source="Source : {source}",
    ordinals=("Premier", "Deuxième", "Troisième", "Quatrième", "Cinquième", "Sixième"),
    number="Numéro {n}",
    topics={
        "general": "à la une",
        "technology": "tech",
        "business": "économie",
        "sports": "sport",
        "science": "science",
        "world": "international",
    },
    topic_news="l'actualité {topic}",
    top_headlines="les principaux titres",
    list_or=" ou ",
    list_sep=", ",
    headline="{ordinal} titre, {title}",
    terminator=".",
)

DE = Phrases(
    code="de",
    no_sources=(
        "Ich konnte keine Nachrichtenquelle erreichen.",
        "Die Einstellung NEWS_FEEDS (oder NEWS_FEEDS_DE) legt fest, welche Feeds ich lese; "
        "trag Feeds ein, die dieser Server erreicht.",
    ),
    nothing_read=(
        "Ich habe dir noch keine Schlagzeilen vorgelesen.",
        "Frag mich zuerst nach den Nachrichten, zum Beispiel: Was gibt es Neues in der Technik?",
    ),
    filler="Einen Moment, ich schaue nach den Nachrichten.",
    stop="Okay. Frag einfach, wenn du mehr Nachrichten willst.",
    only_news="Tut mir leid, ich kann nur mit Nachrichten helfen.",
    greeting="Hallo! Ich kann dir die neuesten Nachrichten vorlesen.",
    help=(
        "Ich lese Nachrichten aus aktuellen Schlagzeilen-Feeds.",
        "Du kannst nach {topics} fragen.",
        "Du kannst auch nach Nachrichten zu einem Thema fragen, etwa über die Raumfahrt.",
        "Nach den Schlagzeilen sag: erzähl mir mehr über die erste, weiter, oder wiederhole.",
    ),
    try_topics="Frag zum Beispiel nach {topics}.",
    intro_top="Hier sind die wichtigsten Schlagzeilen.",
    intro_topic="Hier sind die neuesten {label}.",
    label_top="wichtigsten Schlagzeilen",
    label_topic="Schlagzeilen aus {topic}",
    label_mentions="Meldungen zu {topic}",
    label_search="Meldungen über {query}",
    no_topic_source=(
        "Ich habe keine Nachrichtenquelle für {topic}, und keine heutige Schlagzeile handelt "
        "davon.",
        "Versuch es mit {topics}.",
    ),
    topic_mentions="Ich habe keine Quelle für {topic}, aber diese Schlagzeilen erwähnen es.",
    none_right_now="Gerade gibt es keine {label}.",
    search_none="Ich finde gerade keine Meldungen über {query}.",
    search_found="Ich habe {count} über {query} gefunden.",
    one_story="eine Meldung",
    n_stories="{n} Meldungen",
    all_on_story=("Mehr habe ich zu dieser Meldung nicht.", "Sag weiter für die nächste."),
    only_read_one="Ich habe nur eine Schlagzeile vorgelesen. Welche möchtest du?",
    only_read_n="Ich habe nur {n} Schlagzeilen vorgelesen. Welche möchtest du?",
    last_of="Das war die letzte der {label}, die ich gerade habe.",
    all_of="Das sind alle {label}, die ich gerade habe.",
    more_intro="Hier sind weitere {label}.",
    earlier_intro="Hier sind die vorherigen {label}.",
    first_one=("Das war die erste.", "Sag weiter, um fortzufahren."),
    hint_one="Sag erzähl mir mehr, um mehr zu hören.",
    hint_many="Frag nach mehr zu einer davon, oder sag weiter.",
    story="Meldung {n}: {title}",
    from_source="Das ist von {source}",
    ordinals=("Erstens", "Zweitens", "Drittens", "Viertens", "Fünftens", "Sechstens"),
    number="Nummer {n}",
    topics={
        "general": "Aktuelles",
        "technology": "Technik",
        "business": "Wirtschaft",
        "sports": "Sport",
        "science": "Wissenschaft",
        "world": "Ausland",
    },
    topic_news="Nachrichten aus {topic}",
    top_headlines="den wichtigsten Schlagzeilen",
    list_or=" oder ",
    list_sep=", ",
    headline="{ordinal}: {title}",
    terminator=".",
)

PHRASES = {p.code: p for p in (EN, ZH, ES, FR, DE)}


def phrases_for(code: str) -> Phrases:
    """The phrase table of a session language (English for anything else)."""
    return PHRASES.get(language(code).code, EN)
