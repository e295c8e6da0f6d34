/*
 * BotFactory website widget: a chat bubble for any website, in one line:
 *
 *   <script src="https://DOMAIN/widget.js" data-bot="PUBLIC_ID" async></script>
 *
 * Plain JavaScript (no framework, nothing loaded from elsewhere), drawn inside a Shadow DOM so the host page's CSS
 * and ours never touch. Everything the visitor reads comes from the server (GET /api/v1/widget/ID/config), already
 * translated, so this file holds no interface text. The visitor id is random and kept in the page's localStorage;
 * the conversation itself lives on the server, so a reload (or a second tab) shows it again.
 *
 * Optional attributes (the bot page's preview uses them): data-lang (a language for the interface), data-color,
 * data-title, data-position (left | right), data-greeting, data-open ("true": start opened).
 *
 * The server inlines widget.css where the placeholder below stands (control_plane/widget/assets.py).
 */
(function () {
  "use strict";

  var CSS = "/*@@WIDGET_CSS@@*/";
  var SEND_RETRIES = 3;
  var TYPING_TIMEOUT_MS = 60000;

  var script = document.currentScript || document.querySelector('script[data-bot][src*="widget.js"]');
  if (!script || !window.fetch || !window.EventSource) return;
  var publicId = script.getAttribute("data-bot") || "";
  if (!/^[A-Za-z0-9_-]{1,40}$/.test(publicId)) return;
  var hostId = "botfactory-widget-" + publicId;
  if (document.getElementById(hostId)) return; // the snippet pasted twice
  var api = new URL(script.src, location.href).origin + "/api/v1/widget/" + publicId;
  var base = new URL(script.src, location.href).origin;

  function storage(name) {
    try {
      var s = window[name];
      s.setItem("__bf", "1");
      s.removeItem("__bf");
      return s;
    } catch (err) {
      return null; // storage blocked: the widget still works, for this page view
    }
  }
  var local = storage("localStorage");
  var session = storage("sessionStorage");
  var keys = {
    visitor: "botfactory:" + publicId + ":visitor",
    open: "botfactory:" + publicId + ":open",
    greeted: "botfactory:" + publicId + ":greeting-dismissed"
  };

  function randomId(bytes) {
    var data = new Uint8Array(bytes);
    (window.crypto || window.msCrypto).getRandomValues(data);
    var text = "";
    for (var i = 0; i < data.length; i++) text += String.fromCharCode(data[i]);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function visitorId() {
    var id = local && local.getItem(keys.visitor);
    if (!id || !/^[A-Za-z0-9_-]{16,64}$/.test(id)) {
      id = randomId(16);
      if (local) local.setItem(keys.visitor, id);
    }
    return id;
  }

  function readJson(response) {
    return response.json().then(
      function (body) { return { status: response.status, body: body }; },
      function () { return { status: response.status, body: null }; }
    );
  }

  function errorText(body, fallback) {
    return (body && body.error && body.error.message) || fallback;
  }

  var lang = script.getAttribute("data-lang") || navigator.language || "";
  fetch(api + "/config?lang=" + encodeURIComponent(lang), { credentials: "omit" })
    .then(readJson)
    .then(function (res) {
      if (res.status !== 200 || !res.body) {
        // For the site's developer: the reason (translated), e.g. this website is not on the allowed list.
        if (window.console) console.warn("BotFactory widget:", errorText(res.body, "HTTP " + res.status));
        return;
      }
      start(res.body);
    })
    .catch(function (err) {
      if (window.console) console.warn("BotFactory widget: the chat could not be loaded.", err);
    });

  function el(tag, className, attrs) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    for (var name in attrs || {}) {
      if (Object.prototype.hasOwnProperty.call(attrs, name)) node.setAttribute(name, attrs[name]);
    }
    return node;
  }

  function icon(path) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var p = document.createElementNS(ns, "path");
    p.setAttribute("d", path);
    svg.appendChild(p);
    return svg;
  }

  var ICON_CHAT = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z";
  var ICON_CLOSE = "M6 6l12 12M18 6L6 18";
  var ICON_SEND = "M3 11.5L21 3l-8.5 18-2.2-7.3L3 11.5z";

  // Plain text with web addresses made clickable; never HTML from the server.
  function fillText(node, text) {
    var parts = String(text).split(/(https?:\/\/[^\s<>"')\]]+)/g);
    for (var i = 0; i < parts.length; i++) {
      if (!parts[i]) continue;
      if (i % 2 === 1) {
        var link = el("a", "", { href: parts[i], target: "_blank", rel: "noopener noreferrer nofollow" });
        link.textContent = parts[i];
        node.appendChild(link);
      } else {
        node.appendChild(document.createTextNode(parts[i]));
      }
    }
  }

  function start(cfg) {
    var strings = cfg.strings;
    var color = script.getAttribute("data-color");
    if (color && /^#[0-9a-fA-F]{6}$/.test(color)) cfg.color = color;
    var title = script.getAttribute("data-title");
    if (title) cfg.title = title;
    var position = script.getAttribute("data-position");
    if (position === "left" || position === "right") cfg.position = position;
    if (script.hasAttribute("data-greeting")) cfg.greeting = script.getAttribute("data-greeting");

    var vid = visitorId();
    var host = el("div", "", { id: hostId, "data-botfactory-widget": publicId });
    var shadow = host.attachShadow({ mode: "open" });
    var style = document.createElement("style");
    style.textContent = CSS;
    shadow.appendChild(style);

    var root = el("div", "bf-root bf-" + (cfg.position === "left" ? "left" : "right"), { lang: cfg.language });
    root.style.setProperty("--bf-accent", cfg.color);
    root.style.setProperty("--bf-on-accent", cfg.text_color || "#ffffff");
    shadow.appendChild(root);

    // Greeting next to the button, until the visitor opens the chat or dismisses it.
    var greeting = el("div", "bf-greeting");
    var greetingText = el("p", "bf-greeting-text");
    greetingText.textContent = cfg.greeting || "";
    var dismiss = el("button", "bf-icon-button bf-dismiss", { type: "button", "aria-label": strings.dismiss });
    dismiss.appendChild(icon(ICON_CLOSE));
    greeting.appendChild(greetingText);
    greeting.appendChild(dismiss);
    greeting.hidden = !cfg.greeting || !!(session && session.getItem(keys.greeted));

    var launcher = el("button", "bf-launcher", {
      type: "button",
      "aria-label": strings.open,
      "aria-expanded": "false",
      "aria-controls": "bf-panel"
    });
    launcher.appendChild(icon(ICON_CHAT));
    var unread = el("span", "bf-unread", { "aria-hidden": "true" });
    unread.hidden = true;
    launcher.appendChild(unread);

    var panel = el("section", "bf-panel", { id: "bf-panel", role: "dialog", "aria-label": strings.chat_label });
    panel.hidden = true;
    var header = el("header", "bf-header");
    var avatar;
    if (cfg.avatar_url) {
      avatar = el("img", "bf-avatar", { src: new URL(cfg.avatar_url, base).href, alt: "", width: "32", height: "32" });
    } else {
      avatar = el("span", "bf-avatar bf-avatar-initial", { "aria-hidden": "true" });
      avatar.textContent = (cfg.title || cfg.name || "?").trim().charAt(0).toUpperCase();
    }
    var heading = el("h2", "bf-title");
    heading.textContent = cfg.title || cfg.name;
    var closeButton = el("button", "bf-icon-button bf-close", { type: "button", "aria-label": strings.close });
    closeButton.appendChild(icon(ICON_CLOSE));
    header.appendChild(avatar);
    header.appendChild(heading);
    header.appendChild(closeButton);

    var log = el("div", "bf-log", { role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0" });
    var typing = el("div", "bf-message bf-bot bf-typing", { "aria-hidden": "true" });
    typing.appendChild(el("span"));
    typing.appendChild(el("span"));
    typing.appendChild(el("span"));
    var status = el("div", "bf-status", { role: "status", "aria-live": "polite" });

    var form = el("form", "bf-form");
    var label = el("label", "bf-sr-only", { for: "bf-input" });
    label.textContent = strings.input_label;
    var input = el("textarea", "bf-input", {
      id: "bf-input",
      rows: "1",
      placeholder: strings.placeholder,
      maxlength: String(cfg.max_message_chars || 4000),
      autocomplete: "off"
    });
    var sendButton = el("button", "bf-send", { type: "submit", "aria-label": strings.send });
    sendButton.appendChild(icon(ICON_SEND));
    form.appendChild(label);
    form.appendChild(input);
    form.appendChild(sendButton);

    panel.appendChild(header);
    panel.appendChild(log);
    panel.appendChild(status);
    panel.appendChild(form);
    root.appendChild(panel);
    root.appendChild(greeting);
    root.appendChild(launcher);
    document.body.appendChild(host);

    // -- conversation state -------------------------------------------------------------------------------
    var shown = {}; // message id → its element (never draw a message twice: history, stream and POST overlap)
    var pending = {}; // client_message_id → {node, text}
    var awaiting = {}; // client_message_id → when sent (typing indicator until its reply)
    var lastId = null;
    var source = null;
    var loaded = false;
    var reconnectTimer = null;
    var reconnectDelay = 2000;
    var typingTimer = null;

    function scrollDown() {
      log.scrollTop = log.scrollHeight;
    }

    // ``before``: draw above this element (history arriving after the visitor already typed something).
    function bubble(role, text, extraClass, before) {
      var node = el("div", "bf-message bf-" + role + (extraClass ? " " + extraClass : ""));
      fillText(node, text);
      log.insertBefore(node, before || (typing.parentNode === log ? typing : null));
      scrollDown();
      return node;
    }

    function updateTyping() {
      var now = Date.now();
      var waiting = false;
      for (var id in awaiting) {
        if (now - awaiting[id] < TYPING_TIMEOUT_MS) waiting = true;
        else delete awaiting[id];
      }
      if (waiting && typing.parentNode !== log) {
        log.appendChild(typing);
        status.textContent = strings.typing;
        scrollDown();
      } else if (!waiting && typing.parentNode === log) {
        log.removeChild(typing);
        if (status.textContent === strings.typing) status.textContent = "";
      }
      clearTimeout(typingTimer);
      if (waiting) typingTimer = setTimeout(updateTyping, 5000);
    }

    function addMessage(m, before) {
      if (m.id && shown[m.id]) return;
      if (m.id) lastId = m.id;
      if (m.role === "visitor" && m.client_message_id && pending[m.client_message_id]) {
        var mine = pending[m.client_message_id];
        mine.node.classList.remove("bf-pending");
        shown[m.id] = mine.node;
        return;
      }
      var node = bubble(m.role === "bot" ? "bot" : "visitor", m.text, m.notice ? "bf-notice" : "", before);
      if (m.id) shown[m.id] = node;
      if (m.role === "bot") {
        if (m.reply_to) delete awaiting[m.reply_to];
        updateTyping();
        if (panel.hidden) unread.hidden = false;
      }
    }

    function failed(cmid, message) {
      var mine = pending[cmid];
      delete awaiting[cmid];
      updateTyping();
      if (!mine) return;
      mine.node.classList.remove("bf-pending");
      mine.node.classList.add("bf-failed");
      var row = el("div", "bf-failure");
      var note = el("span");
      note.textContent = message || strings.not_sent;
      var retry = el("button", "bf-link", { type: "button" });
      retry.textContent = strings.retry;
      retry.addEventListener("click", function () {
        row.parentNode.removeChild(row);
        mine.node.classList.remove("bf-failed");
        mine.node.classList.add("bf-pending");
        awaiting[cmid] = Date.now();
        updateTyping();
        post(cmid, mine.text, 0);
      });
      row.appendChild(note);
      row.appendChild(document.createTextNode(" "));
      row.appendChild(retry);
      log.insertBefore(row, mine.node.nextSibling);
      scrollDown();
    }

    function post(cmid, text, attempt) {
      var body = JSON.stringify({ visitor_id: vid, text: text, client_message_id: cmid, language: cfg.language });
      fetch(api + "/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: body,
        credentials: "omit"
      })
        .then(readJson)
        .then(function (res) {
          if (res.status === 202 && res.body) {
            var mine = pending[cmid];
            if (mine) {
              mine.node.classList.remove("bf-pending");
              shown[res.body.message_id] = mine.node;
            }
            openStream();
          } else {
            failed(cmid, errorText(res.body, strings.not_sent));
          }
        })
        .catch(function () {
          // A network error: the same client_message_id makes the retry safe (the server keeps one copy).
          if (attempt < SEND_RETRIES) {
            setTimeout(function () { post(cmid, text, attempt + 1); }, 1000 * Math.pow(2, attempt));
          } else {
            failed(cmid, strings.not_sent);
          }
        });
    }

    function send(text) {
      var cmid = randomId(12);
      pending[cmid] = { node: bubble("visitor", text, "bf-pending"), text: text };
      awaiting[cmid] = Date.now();
      updateTyping();
      post(cmid, text, 0);
    }

    function openStream() {
      if (source) return;
      clearTimeout(reconnectTimer);
      var url = api + "/stream?visitor_id=" + encodeURIComponent(vid) + (lastId ? "&after=" + lastId : "");
      source = new EventSource(url);
      var showTimer = null;
      source.addEventListener("message", function (event) {
        try {
          addMessage(JSON.parse(event.data));
        } catch (err) {
          /* a malformed event is skipped */
        }
      });
      source.onopen = function () {
        reconnectDelay = 2000;
        clearTimeout(showTimer);
        if (status.textContent === strings.reconnecting) status.textContent = "";
      };
      source.onerror = function () {
        // The browser reconnects by itself (with Last-Event-ID); say so only if it takes a while.
        clearTimeout(showTimer);
        showTimer = setTimeout(function () {
          if (source && source.readyState !== 1) status.textContent = strings.reconnecting;
        }, 2500);
        if (source.readyState === 2) {
          // Given up (e.g. a 429): start again ourselves, from the last message we have.
          source = null;
          reconnectTimer = setTimeout(openStream, reconnectDelay);
          reconnectDelay = Math.min(reconnectDelay * 2, 60000);
        }
      };
    }

    function loadConversation() {
      if (loaded) return;
      loaded = true;
      fetch(api + "/history?visitor_id=" + encodeURIComponent(vid), { credentials: "omit" })
        .then(readJson)
        .then(function (res) {
          var messages = (res.status === 200 && res.body && res.body.messages) || [];
          var first = log.firstChild; // anything the visitor sent meanwhile stays below the history
          if (!messages.length && cfg.welcome_message) bubble("bot", cfg.welcome_message, "bf-welcome", first);
          for (var i = 0; i < messages.length; i++) addMessage(messages[i], first);
          if (res.body && res.body.last_id) lastId = res.body.last_id;
          openStream();
        })
        .catch(function () {
          loaded = false;
          status.textContent = strings.error;
        });
    }

    function open(focusInput) {
      panel.hidden = false;
      greeting.hidden = true;
      unread.hidden = true;
      root.classList.add("bf-is-open");
      launcher.setAttribute("aria-expanded", "true");
      launcher.setAttribute("aria-label", strings.close);
      if (session) session.setItem(keys.open, "1");
      loadConversation();
      scrollDown();
      if (focusInput) input.focus();
    }

    function close() {
      panel.hidden = true;
      root.classList.remove("bf-is-open");
      launcher.setAttribute("aria-expanded", "false");
      launcher.setAttribute("aria-label", strings.open);
      if (session) session.removeItem(keys.open);
      launcher.focus();
    }

    launcher.addEventListener("click", function () {
      if (panel.hidden) open(true);
      else close();
    });
    closeButton.addEventListener("click", close);
    dismiss.addEventListener("click", function () {
      greeting.hidden = true;
      if (session) session.setItem(keys.greeted, "1");
      launcher.focus();
    });
    greetingText.addEventListener("click", function () { open(true); });
    root.addEventListener("keydown", function (event) {
      if ((event.key === "Escape" || event.key === "Esc") && !panel.hidden) {
        event.stopPropagation();
        close();
      }
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true }));
      }
    });
    input.addEventListener("input", function () {
      input.style.height = "auto";
      input.style.height = Math.min(input.scrollHeight, 120) + "px";
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value.trim();
      if (!text) return;
      input.value = "";
      input.style.height = "auto";
      send(text);
      input.focus();
    });

    // Reopened after a reload (or asked to start open): never steal the page's focus for it.
    if ((session && session.getItem(keys.open)) || script.getAttribute("data-open") === "true") open(false);
  }
})();
