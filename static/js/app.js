/*
 * BotFactory page enhancements. Every page works without this file; it only adds comfort:
 *   - the mobile navigation toggle (without JS the navigation simply wraps),
 *   - copy buttons:   <button type="button" class="copy-button" data-copy="text"> or data-copy-target="#id",
 *   - confirm dialogs: <form data-confirm="Delete this bot?"> (or a submit button with data-confirm) asks first
 *     in an accessible <dialog>; without JS the form submits straight to the server, which must therefore
 *     never rely on this dialog for safety.
 * Translated labels come from the server-rendered page (data attributes on <body> and the #confirm-dialog
 * markup), so this file holds no user-visible text.
 */
(function () {
  "use strict";

  // Marks the page as scripted before first paint, so CSS can collapse the phone navigation without a flash.
  document.documentElement.classList.add("js");

  function initNavToggle() {
    var toggle = document.querySelector(".nav-toggle");
    if (!toggle) return;
    var nav = document.getElementById(toggle.getAttribute("aria-controls"));
    if (!nav) return;
    toggle.hidden = false;

    function setOpen(open) {
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      nav.classList.toggle("open", open);
    }

    toggle.addEventListener("click", function () {
      setOpen(toggle.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
        setOpen(false);
        toggle.focus();
      }
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-HTTP development servers have no Clipboard API; fall back to a hidden textarea.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      try {
        document.execCommand("copy") ? resolve() : reject(new Error("copy failed"));
      } catch (err) {
        reject(err);
      } finally {
        document.body.removeChild(area);
      }
    });
  }

  function textFor(button) {
    if (button.hasAttribute("data-copy")) return button.getAttribute("data-copy");
    var selector = button.getAttribute("data-copy-target");
    var target = selector ? document.querySelector(selector) : null;
    if (!target) return null;
    return "value" in target && typeof target.value === "string" ? target.value : target.textContent;
  }

  function initCopyButtons() {
    var copied = document.body.getAttribute("data-copied-label") || "✓";
    var live = document.getElementById("live-region");
    document.addEventListener("click", function (event) {
      var button = event.target.closest ? event.target.closest(".copy-button") : null;
      if (!button) return;
      var text = textFor(button);
      if (text === null) return;
      event.preventDefault();
      copyText(text.trim()).then(function () {
        var original = button.getAttribute("data-label") || button.textContent;
        button.setAttribute("data-label", original);
        button.textContent = copied;
        button.classList.add("copied");
        if (live) live.textContent = copied;
        window.setTimeout(function () {
          button.textContent = original;
          button.classList.remove("copied");
        }, 2000);
      });
    });
  }

  function initConfirm() {
    var dialog = document.getElementById("confirm-dialog");
    var supported = dialog && typeof dialog.showModal === "function";
    var confirmedForm = null;

    document.addEventListener(
      "submit",
      function (event) {
        var form = event.target;
        var submitter = event.submitter || null;
        var message =
          (submitter && submitter.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
        if (!message || form === confirmedForm) return;
        event.preventDefault();
        if (!supported) {
          // Old browsers: the native confirm() is still better than no question at all.
          if (window.confirm(message)) submitConfirmed(form, submitter);
          return;
        }
        dialog.querySelector("[data-confirm-message]").textContent = message;
        var ok = dialog.querySelector("[data-confirm-ok]");
        var danger = (submitter && submitter.classList.contains("btn-danger")) || form.hasAttribute("data-danger");
        ok.classList.toggle("btn-danger", danger);
        ok.classList.toggle("btn-primary", !danger);
        dialog.returnValue = "";
        dialog.showModal();
        dialog.addEventListener(
          "close",
          function () {
            if (dialog.returnValue === "ok") submitConfirmed(form, submitter);
          },
          { once: true }
        );
      },
      true
    );

    function submitConfirmed(form, submitter) {
      confirmedForm = form;
      if (typeof form.requestSubmit === "function") {
        form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
      } else {
        form.submit();
      }
      confirmedForm = null;
    }
  }

  function ready(fn) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", fn);
    } else {
      fn();
    }
  }

  ready(function () {
    initNavToggle();
    initCopyButtons();
    initConfirm();
  });
})();
