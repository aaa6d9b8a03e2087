package dev.fedge.core.jvm;

import com.sun.source.util.JavacTask;
import java.io.File;
import java.util.ArrayList;
import java.util.List;
import javax.tools.Diagnostic;
import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;

/**
 * Syntax check of Java sources that cannot be compiled here (the Android app's: there is
 * no android.jar on this machine). Parsing only: names and Android APIs are NOT resolved.
 */
public final class ParseCheck {
    private ParseCheck() {
    }

    public static void main(String[] paths) throws Exception {
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        DiagnosticCollector<JavaFileObject> diagnostics = new DiagnosticCollector<>();
        try (StandardJavaFileManager files = javac.getStandardFileManager(diagnostics, null, null)) {
            List<File> sources = new ArrayList<>();
            for (String path : paths) {
                sources.add(new File(path));
            }
            JavacTask task = (JavacTask) javac.getTask(null, files, diagnostics, List.of("-proc:none"), null,
                    files.getJavaFileObjectsFromFiles(sources));
            task.parse();
        }
        int errors = 0;
        for (Diagnostic<? extends JavaFileObject> d : diagnostics.getDiagnostics()) {
            if (d.getKind() == Diagnostic.Kind.ERROR) {
                errors++;
                System.out.println(d);
            }
        }
        System.out.println("parsed " + paths.length + " files, " + errors + " syntax errors");
        System.exit(errors == 0 ? 0 : 1);
    }
}
