"""Forms of the demo chat."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms
from django.utils.text import slugify

from .models import Message, validate_room

__all__ = ["MessageForm", "RoomForm", "room_slug"]

if TYPE_CHECKING:  # ModelForm is generic only in django-stubs, not at run time
    _MessageModelForm = forms.ModelForm[Message]
else:
    _MessageModelForm = forms.ModelForm


def room_slug(name: str) -> str:
    """Turn what someone typed into a room name that is a valid channel segment.

    ``"Café Talk!"`` becomes ``"cafe-talk"``; the result may be empty.
    """
    # slugify keeps '_' (not allowed in channel paths) and may leave leading/trailing '-'.
    slug = slugify(name).replace("_", "-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return slug.strip("-")[:50].strip("-")


class RoomForm(forms.Form):
    """Pick (or create) a room by name."""

    name = forms.CharField(max_length=100, label="Room")

    def clean_name(self) -> str:
        """Return the room's slug, or say why the name cannot be one."""
        slug = room_slug(self.cleaned_data["name"])
        if not slug:
            raise forms.ValidationError("Use at least one letter or digit in the room name.")
        validate_room(slug)
        return slug


class MessageForm(_MessageModelForm):
    """Post a message: the author's name and the text (both stripped, both required)."""

    class Meta:
        model = Message
        fields = ("author", "text")
        widgets = {"text": forms.TextInput(attrs={"autocomplete": "off"})}
