"""A small generic multilingual lexicon of customer-service concepts (price, delivery, hours, payment, ...).

Customers rarely use the owner's words ("shipping" for "delivery", "безнал" for "card"), and a Russian question
must find an Uzbek answer. Mapping words of any of the three languages to shared concept keys ("@delivery") bridges
both gaps for the topics every shop's knowledge base covers. It names no product, brand or item of any business:
anything specific to one bot must come from its own knowledge base (or from dense vectors).

Entries are written in their natural script; a trailing ``*`` makes an entry a prefix, and ``_`` joins the words
of a phrase (each word may end with ``*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from bot_runtime.answering.text import canonical, normalize

_CONCEPTS: dict[str, str] = {
    "price": """price* pricing cost costs costing expensive cheap* uzs sum sums how_much
        цен* стоимост* стоит стоят стоить почем почём дорог* дешев* дешёв* прайс* сум сумов
        narx* turadi turar turishi qimmat* arzon* baho* so'm so'mdan so'mga necha_pul""",
    "delivery": """deliver* shipping ship shipped courier* bring brought drop_off
        доставк* доставл* доставит* доставите привез* привоз* привест* курьер* отправк*
        yetkaz* eltib keltir* jo'nat* kuryer* dostavka* dastavka* olib_kel* olib_bor*""",
    "free": """free complimentary no_charge for_nothing at_no_cost бесплатн* даром без_оплаты bepul tekin*""",
    "hours": """open opens opening close closes closing closed shut hours schedule timetable evening morning night
        holiday* weekend* working_hours business_hours
        работаем работаете работает работают график* режим* открыт* открыва* закрыва* закрыт* выходн* праздни*
        вечер* утр* часы_работы ochiq* ochil* yopil* yopiq* bayram* kechqurun ertalab ishlaysiz* ishlaydi* ishlaymiz
        ish_vaqt* dam_olish*""",
    "weekday": """monday* tuesday* wednesday* thursday* friday* saturday* sunday*
        понедельник* вторник* среду среда четверг* пятниц* суббот* воскресен*
        dushanba* seshanba* chorshanba* payshanba* juma* shanba* yakshanba*""",
    "location": """address* location* located directions map landmark* how_to_get find_you
        адрес* находит* располож* ориентир* проехать добраться manzil* joylash* mo'ljal*""",
    "transit": """metro subway underground station* bus метро станци* остановк* автобус* bekat* avtobus*""",
    "parking": """parking park car cars vehicle* парков* машин* автомобил* стоянк*
        avtoturargoh* turargoh* mashina* avtomobil*""",
    "contact": """phone* call calls calling contact* reach mobile telegram email e_mail whatsapp
        телефон* звон* позвон* связ* контакт* почт* телеграм* telefon* qo'ng'iroq* bog'lan* aloqa* pochta*""",
    "payment": """pay paying payment* paid card cards cash cashless transfer
        money оплат* плат* карт* наличн* безнал* перевод* расплат* рассчита* деньг* to'lov* to'la* karta* naqd*
        pul pulni pulini pulim* puling* pul_o'tkaz*""",
    "installment": """installment* instalment* credit loan interest_free interest monthly in_parts pay_later
        рассрочк* кредит* частям переплат* muddatli nasiya* kredit* bo'lib_to'la* bo'lib_bo'lib""",
    "warranty": """warrant* guarantee* defect* broken break breaks broke faulty damaged damage
        гарант* брак* дефект* слома* сломал* поломк* поврежд* kafolat* nuqson* buzil* sinib singan sindi shikast*""",
    "repair": """repair* fix fixes fixing ремонт* почин* ta'mir* tuzat*""",
    "return": """return* refund* exchange* give_back send_back take_back
        возврат* вернут* вернуть верните обмен* сдать_обратно qaytar* almashtir*""",
    "discount": """discount* sale sales promo* offer* deal deals coupon* скидк* акци* распродаж* промокод*
        chegirma* aksiya*""",
    "assembly": """assembl* install* mount* put_together set_up сборк* собира* собер* установ* монтаж*
        yig'ish* yig'ib* yig'ilad* o'rnat*""",
    "order": """order* ordering заказ* buyurtma*""",
    "custom": """custom* individual* measure* measurement* size* dimension* bespoke made_to_order
        размер* замер* индивидуал* нестандарт* o'lcham*""",
    "stock": """stock available availability in_stock наличи* omborda ombor* mavjud*""",
    "jobs": """job jobs vacanc* hiring hire staff employee* career* cv resume ваканс* сотрудник* резюме работник*
        xodim* vakansiya* ishchi* rezyume* ish_o'rni*""",
    "business": """corporate company companies business wholesale bulk legal_entity
        корпоратив* юрлиц* юридическ* опт оптом оптов* компани* организаци*
        korporativ* ulgurji* kompaniya* tashkilot* yuridik_shaxs*""",
    "prepayment": """prepay* deposit* advance предоплат* аванс* залог* oldindan_to'lov* oldindan_to'la*""",
    "floor": """floor* upstairs stairs elevator* lift этаж* подъем* подъём* лифт* лестниц*
        qavat* lift* zina* ko'tar*""",
    "care": """clean* care wash* stain* maintain* maintenance чист* уход* ухажива* пятн* мыть мойк*
        tozala* parvarish*""",
    "showroom": """showroom* store shop display visit* in_person шоурум* магазин* салон* вживую выставк*
        shourum* do'kon* ko'rgazma*""",
    "purchase": """buy buying bought purchase* покуп* купит* купи купить приобре* xarid* sotib_ol*""",
    "region": """region* province* city област* регион* город* viloyat* shahar* shahr*""",
}


def _canonical_pattern(part: str) -> tuple[str, bool]:
    prefix = part.endswith("*")
    return canonical(normalize(part.rstrip("*"))), prefix


Pattern = tuple[str, bool]


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[str, set[str]], dict[str, set[str]], list[tuple[tuple[Pattern, ...], str]]]:
    exact: dict[str, set[str]] = {}
    prefixes: dict[str, set[str]] = {}
    phrases: list[tuple[tuple[Pattern, ...], str]] = []
    for concept, spec in _CONCEPTS.items():
        for entry in spec.split():
            parts = entry.split("_")
            if len(parts) > 1:
                phrases.append((tuple(_canonical_pattern(p) for p in parts), concept))
                continue
            key, is_prefix = _canonical_pattern(entry)
            (prefixes if is_prefix else exact).setdefault(key, set()).add(concept)
    return exact, prefixes, phrases


def _matches(word: str, pattern: tuple[str, bool]) -> bool:
    key, is_prefix = pattern
    return word.startswith(key) if is_prefix else word == key


def concepts_for_word(word: str) -> frozenset[str]:
    """Concepts of one canonical word (see :func:`bot_runtime.answering.text.canonical`)."""
    return _concepts_for_word(word)


@lru_cache(maxsize=100_000)
def _concepts_for_word(word: str) -> frozenset[str]:
    exact, prefixes, _ = _tables()
    found: set[str] = set(exact.get(word, ()))
    for end in range(2, len(word) + 1):
        hit = prefixes.get(word[:end])
        if hit:
            found.update(hit)
    return frozenset(found)


def phrase_concepts(words: Sequence[str], skippable: Sequence[bool] | None = None) -> list[tuple[int, int, str]]:
    """Multi-word concepts in a sequence of canonical words, as (start, end, concept) spans.

    One ``skippable`` word (a stop-word) may sit between two parts of a phrase: "put it together", "olib ham kel".
    """
    found: list[tuple[int, int, str]] = []
    for start, word in enumerate(words):
        for patterns, concept in _phrases_starting(word):
            position = start + 1
            for pattern in patterns[1:]:
                if position < len(words) and _matches(words[position], pattern):
                    position += 1
                elif (
                    skippable is not None
                    and position + 1 < len(words)
                    and skippable[position]
                    and _matches(words[position + 1], pattern)
                ):
                    position += 2
                else:
                    break
            else:
                found.append((start, position, concept))
    return found


@lru_cache(maxsize=100_000)
def _phrases_starting(word: str) -> tuple[tuple[tuple[Pattern, ...], str], ...]:
    """The phrases whose first word matches ``word`` (cached: most words start none)."""
    return tuple((patterns, concept) for patterns, concept in _tables()[2] if _matches(word, patterns[0]))
