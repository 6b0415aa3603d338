// Conveniences only; every page works without this script.
// The draft check: a picked file is read into the text box, so the editor sees (and can
// edit) what will be checked; the file input is then cleared so it is not sent twice.
document.addEventListener("DOMContentLoaded", () => {
  const file = document.querySelector('form.draft input[type="file"]');
  const box = document.querySelector("form.draft textarea");
  if (!file || !box) return;
  file.addEventListener("change", () => {
    const picked = file.files && file.files[0];
    if (!picked) return;
    picked.text().then((text) => {
      box.value = text;
      file.value = "";
      box.focus();
    });
  });
});
