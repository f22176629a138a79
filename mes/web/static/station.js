// PlantGate MES station screen: after a barcode scan (the scanner types, then Enter), move
// to the next field instead of submitting a half-filled form. A field may name the one to
// go to in data-next. Without this script Enter submits, and the server answers with the
// fields still to fill: nothing depends on it.
"use strict";
document.addEventListener("keydown", function (event) {
  var field = event.target;
  if (event.key !== "Enter" || !field || !field.hasAttribute || !field.hasAttribute("data-scan")) {
    return;
  }
  var form = field.form;
  if (!form) {
    return;
  }
  var named = field.getAttribute("data-next");
  var next = named ? document.getElementById(named) : null;
  if (!next) {
    var inputs = Array.prototype.filter.call(form.elements, function (el) {
      return (el.tagName === "INPUT" || el.tagName === "TEXTAREA") &&
        el.type !== "hidden" && !el.disabled;
    });
    next = inputs[inputs.indexOf(field) + 1];
  }
  if (next) {
    event.preventDefault();
    next.focus();
  }
});
