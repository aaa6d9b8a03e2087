package dev.fedge.android;

import dev.fedge.core.Release;
import java.io.File;

/** Told when the library installed a new model release (on its worker thread). */
public interface ReleaseListener {
    void onRelease(Release release, File model);
}
